import ArgumentParser
import Foundation
import Inventory
import Publishing
import ServerSetup

extension Fleet {
    struct SSHDConfig: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sshd-config",
            abstract: "Print the sshd configuration that serves each host its chroot, SFTP only.",
            discussion: """
                By default a complete configuration for a dedicated sshd (`sshd -f FILE`) that only the fleet's host \
                users may use. With --match-only, just the Match blocks, to append to an existing sshd_config. Hosts \
                without an SSH key in fleet.toml are left out (a note on standard error names them). MaxStartups and \
                LoginGraceTime are sized for a burst of every host polling at once: for the hosts in fleet.toml (or \
                --hosts N) and this machine's cores (or --cores N); a line on standard error says what was chosen (with --match-only, as advice for the global \
                section of sshd_config).
                """)

        @OptionGroup var global: GlobalOptions

        @Option(help: ArgumentHelp("Address to listen on.", valueName: "address"))
        var listenAddress: String = "0.0.0.0"

        @Option(help: ArgumentHelp("Port to listen on, over fleet.toml's [server] port.", valueName: "port"))
        var port: Int?

        /// The old `--listen ADDRESS:PORT`, still read.
        @Option(help: .hidden)
        var listen: String?

        @Option(
            help: ArgumentHelp(
                "A host private key sshd serves (repeatable; default /etc/ssh/ssh_host_ed25519_key).",
                valueName: "file"))
        var hostPrivateKey: [String] = []

        /// The old spelling of `--host-private-key`.
        @Option(name: .customLong("host-key"), help: .hidden)
        var oldHostKey: [String] = []

        @Option(help: "PID file of the dedicated sshd.")
        var pidFile: String?

        @Option(
            help: ArgumentHelp(
                "Size MaxStartups and LoginGraceTime for this many hosts (default: the hosts in fleet.toml).",
                valueName: "count"))
        var hosts: Int?

        @Option(
            help: ArgumentHelp(
                "Size them for a server with this many cores (default: this machine's).", valueName: "count"))
        var cores: Int?

        @Flag(help: "Print only the Match blocks.")
        var matchOnly = false

        func validate() throws {
            if let port, !(1...65535).contains(port) { throw ValidationError("--port must be in 1...65535") }
            let hostRange = SSHDConfiguration.BurstSizing.hostRange
            if let hosts, !hostRange.contains(hosts) {
                throw ValidationError(
                    "--hosts \(hosts): expected a number of hosts in \(hostRange.lowerBound)...\(hostRange.upperBound)")
            }
            let coreRange = SSHDConfiguration.BurstSizing.coreRange
            if let cores, !coreRange.contains(cores) {
                throw ValidationError(
                    "--cores \(cores): expected a number of cores in \(coreRange.lowerBound)...\(coreRange.upperBound)")
            }
            if listen != nil && (port != nil || listenAddress != "0.0.0.0") {
                throw ValidationError(
                    "--listen is the old spelling of --listen-address and --port: give one or the other")
            }
            if let listen, Self.split(listen) == nil {
                throw ValidationError("--listen \(listen): expected ADDRESS:PORT, e.g. 127.0.0.1:2222")
            }
            if let problem = Self.addressProblem(listen.flatMap(Self.split)?.address ?? listenAddress) {
                throw ValidationError("--listen-address: \(problem)")
            }
            // Written into sshd_config as they are, where a space, quote, % or newline would change their meaning.
            let paths = (hostPrivateKey + oldHostKey).map { ("--host-private-key", $0) } + [("--pid-file", pidFile)]
            for case let (flag, path?) in paths {
                if let problem = FleetConfiguration.Server.problem(withPath: path) {
                    throw ValidationError("\(flag) \(String(reflecting: path)): \(problem)")
                }
            }
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            var listener: SSHDConfiguration.Listener?
            if !matchOnly {
                let keys = hostPrivateKey + oldHostKey
                for key in keys {
                    if let problem = KeyFileKind.privateKeyProblem(key) {
                        throw CommandFailure("--host-private-key \(key): \(problem)")
                    }
                }
                let parsed = listen.flatMap(Self.split)
                listener = .init(
                    address: parsed?.address ?? listenAddress, port: parsed?.port ?? port ?? configuration.server.port,
                    hostKeys: keys.isEmpty ? ["/etc/ssh/ssh_host_ed25519_key"] : keys, pidFile: pidFile)
            }
            for host in SSHDConfiguration.skippedHosts(configuration) {
                printError("note: \(host.name) left out: \(Publisher.missingKeyReason(host, file: configuration.file))")
            }
            let sizing = SSHDConfiguration.BurstSizing(
                hosts: hosts ?? max(configuration.hosts.count, 1),
                cores: cores ?? ProcessInfo.processInfo.activeProcessorCount)
            printError(
                matchOnly
                    ? "note: for bursts, set in sshd_config's global section: MaxStartups \(sizing.start):\(sizing.rate):"
                        + "\(sizing.full) and LoginGraceTime \(sizing.loginGraceSeconds) (\(sizing.hosts) hosts, \(sizing.cores) cores)"
                    : "note: \(sizing.summary)")
            print(SSHDConfiguration.render(configuration, listener: listener, sizing: sizing), terminator: "")
        }

        /// `ADDRESS:PORT` (`[v6]:PORT` too), or nil.
        static func split(_ text: String) -> (address: String, port: Int)? {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
                (1...65535).contains(port)
            else { return nil }
            return (String(text[..<colon]).trimmingCharacters(in: ["[", "]"]), port)
        }

        /// Why `address` cannot follow `ListenAddress` in sshd_config (a space or newline would start another
        /// directive), or nil: a host name or an IP literal.
        static func addressProblem(_ address: String) -> String? {
            let allowed = address.unicodeScalars.allSatisfy {
                $0.isASCII
                    && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || ".:-%".unicodeScalars.contains($0))
            }
            return allowed && !address.isEmpty && address.utf8.count <= 253
                ? nil : "\(String(reflecting: address)) is not a host name or IP address"
        }
    }
}
