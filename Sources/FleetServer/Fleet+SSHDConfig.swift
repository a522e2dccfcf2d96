import ArgumentParser
import Foundation
import Inventory
import ServerSetup

extension Fleet {
    struct SSHDConfig: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sshd-config",
            abstract: "Print the sshd configuration that serves each host its chroot, SFTP only.",
            discussion: """
                By default a complete configuration for a dedicated sshd (`sshd -f FILE`) that only the fleet's host \
                users may use. With --match-only, just the Match blocks, to append to an existing sshd_config.
                """)

        @OptionGroup var global: GlobalOptions

        @Option(help: "Address and port to listen on (default: 0.0.0.0 and [server] port).")
        var listen: String?

        @Option(help: "Host key file (repeatable; default /etc/ssh/ssh_host_ed25519_key).")
        var hostKey: [String] = []

        @Option(help: "PID file of the dedicated sshd.")
        var pidFile: String?

        @Flag(help: "Print only the Match blocks.")
        var matchOnly = false

        func run() async throws {
            let configuration = try global.loadConfiguration()
            var listener: SSHDConfiguration.Listener?
            if !matchOnly {
                var address = "0.0.0.0"
                var port = configuration.server.port
                if let listen {
                    guard let colon = listen.lastIndex(of: ":"),
                        let parsed = Int(listen[listen.index(after: colon)...]),
                        (1...65535).contains(parsed)
                    else { throw ValidationError("--listen \(listen): expected ADDRESS:PORT, e.g. 127.0.0.1:2222") }
                    address = String(listen[..<colon]).trimmingCharacters(in: ["[", "]"])
                    port = parsed
                }
                listener = .init(
                    address: address, port: port,
                    hostKeys: hostKey.isEmpty ? ["/etc/ssh/ssh_host_ed25519_key"] : hostKey, pidFile: pidFile)
            }
            print(SSHDConfiguration.render(configuration, listener: listener), terminator: "")
        }
    }
}
