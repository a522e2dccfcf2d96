public import ClientStateStore
public import CommandRunner
import FleetFiles
public import FleetProtocol
import Foundation
import HostAgent
import Publishing
public import ServerStore

/// A fleet server (real sshd configured by `fleet sshd-config`, users and chroots made by `fleet setup`) and
/// its hosts' clients, each with its own state directory, Nix profile, activation log and SSH key, all on
/// this machine. Hosts are toy NixOS flakes built by the real Nix. `stop()` removes everything.
public struct ClientFleet: Sendable {
    public let fixture: FleetFixture
    public let sshd: TestSSHD
    public let prefix: String
    public let hosts: [String]
    /// Client side: keys, client.toml, state directories, profiles, activation logs.
    public let clients: TestDirectory

    /// The example fleet's toy NixOS (`common/toy-nixos.nix` of this repository).
    public static let toyNixOS: String = {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        return (try? String(contentsOfFile: repository + "/common/toy-nixos.nix", encoding: .utf8)) ?? ""
    }()

    /// Starts a server for `hosts` (toy flakes sharing `common/`), publishes them, and writes each host's
    /// client.toml with `fleet client-config`. `prepare` may change the repository before the first publish.
    public static func start(hosts: [String], prepare: (FleetFixture) throws -> Void = { _ in }) async throws
        -> ClientFleet
    {
        let prefix = "fc" + String(UUID().uuidString.lowercased().filter(\.isLetter).prefix(4)) + "-"
        let clients = try TestDirectory.makeTemporary()
        let fixture = try FleetFixture(hosts: [], rootOwned: true, serverToml: "user_prefix = \"\(prefix)\"")
        var sshd: TestSSHD?
        do {
            try fixture.write("common/toy-nixos.nix", toyNixOS)
            var toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
            for host in hosts {
                try addToyHost(host, to: fixture)
                let key = try KeyPair.generate(at: clients.path("\(host).key"), comment: "root@\(host)")
                toml += "[hosts.\(host)]\nkey = \"\(key.publicKeyLine)\"\n"
            }
            try fixture.write("fleet.toml", toml)
            try prepare(fixture)
            try await check(fixture.fleet(["setup"]), "fleet setup")
            try await check(fixture.fleet(["publish"]), "fleet publish")
            let output = try await check(
                fixture.fleet([
                    "sshd-config", "--listen-address", "127.0.0.1", "--port", "1", "--host-private-key", "/unused",
                ]), "fleet sshd-config")
            let body = output.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix("ListenAddress") && !$0.hasPrefix("HostKey") && !$0.hasPrefix("PidFile") }
                .joined(separator: "\n")
            let server = try TestSSHD.start(configBody: body)
            sshd = server
            try clients.writeFile("server_host_key.pub", text: server.hostPublicKey + "\n")
            let fleet = ClientFleet(fixture: fixture, sshd: server, prefix: prefix, hosts: hosts, clients: clients)
            for host in hosts { try await fleet.writeClientConfiguration(host) }
            return fleet
        } catch {
            sshd?.stop()
            removeUsers(prefix: prefix, hosts: hosts)
            fixture.remove()
            clients.remove()
            throw error
        }
    }

    public func stop() {
        sshd.stop()
        Self.removeUsers(prefix: prefix, hosts: hosts)
        fixture.remove()
        clients.remove()
    }

    private static func removeUsers(prefix: String, hosts: [String]) {
        for host in hosts {
            _ = try? TestCommand.run("/usr/sbin/userdel", [prefix + host])
            _ = try? TestCommand.run("/usr/sbin/groupdel", [prefix + host])
        }
    }

    @discardableResult
    public static func check(_ output: CommandOutput, _ what: String) throws -> CommandOutput {
        guard output.exitCode == 0 else {
            throw TestSupportError(
                "\(what) failed (\(output.exitCode)): \(output.standardOutput)\(output.standardError)")
        }
        return output
    }

    /// A toy NixOS flake host: `flake.nix`, `configuration.nix` (its motd), `common -> ../../common`.
    public static func addToyHost(_ host: String, to fixture: FleetFixture, motd: String? = nil) throws {
        try fixture.addHost(host)
        try fixture.write(
            "hosts/\(host)/flake.nix",
            """
            {
              outputs = { self }: {
                nixosConfigurations.\(host) = import ./common/toy-nixos.nix {
                  hostName = "\(host)";
                  modules = [ ./common/base.nix ./configuration.nix ];
                };
              };
            }

            """)
        try fixture.write("hosts/\(host)/configuration.nix", "{ motd = [ \"\(motd ?? host)\" ]; }\n")
    }

    // MARK: - The client side

    public func configPath(_ host: String) -> String { clients.path("\(host)/client.toml") }
    public func stateDirectory(_ host: String) -> String { clients.path("\(host)/state") }
    public func profile(_ host: String) -> String { clients.path("\(host)/profiles/system") }
    public func activationLog(_ host: String) -> String { clients.path("\(host)/activations.log") }
    public var serverHostKeyFile: String { clients.path("server_host_key.pub") }

    /// `fleet client-config` for the host, pointing at this sshd and the host's own directories.
    public func writeClientConfiguration(_ host: String, extraArguments: [String] = []) async throws {
        try FileIO.createDirectories(clients.path(host))
        let output = try await Self.check(
            fixture.fleet(
                [
                    "client-config", host, "--server-address", "127.0.0.1", "--port", "\(sshd.port)",
                    "--host-public-key", serverHostKeyFile, "--identity-file", clients.path("\(host).key"),
                    "--client-state-dir", stateDirectory(host), "--profile", profile(host),
                ] + extraArguments), "fleet client-config \(host)")
        // A short confirmation window keeps tests of rollbacks short; a test may shorten or widen it again.
        try clients.writeFile("\(host)/client.toml", text: output.standardOutput)
        try editClientConfiguration(host) { text in
            text.replacingOccurrences(of: "confirm_timeout_seconds = 90", with: "confirm_timeout_seconds = 6")
                .replacingOccurrences(of: "confirm_attempts = 3", with: "confirm_attempts = 2")
                .replacingOccurrences(of: "connect_timeout_seconds = 10", with: "connect_timeout_seconds = 2")
                // Tests that cut the server expect the run to give up at once; ConnectRetryTests turns it on.
                .replacingOccurrences(of: "connect_retry_seconds = 180", with: "connect_retry_seconds = 0")
        }
    }

    /// Rewrites the host's client.toml.
    public func editClientConfiguration(_ host: String, _ edit: (String) -> String) throws {
        let text = try String(contentsOfFile: configPath(host), encoding: .utf8)
        try clients.writeFile("\(host)/client.toml", text: edit(text))
    }

    /// Runs `fleet-client <arguments> --config <host's client.toml>`, with the host's activation log.
    /// - Parameter outputLimit: how much of fleet-client's output the test keeps (a build's lines go there too).
    public func client(
        _ host: String, _ arguments: [String] = ["run"], environment: [String: String] = [:],
        outputLimit: Int = 16 << 20
    ) async throws -> CommandOutput {
        try await Command.run(
            FleetFixture.executable("fleet-client"), arguments + ["--config", configPath(host)],
            environment: ["FLEET_ACTIVATION_LOG": activationLog(host)].merging(environment) { $1 },
            outputLimit: outputLimit)
    }

    public func state(_ host: String) throws -> ClientState {
        try ClientState.load(stateDirectory: stateDirectory(host))
    }

    /// Lines of the host's activation log: `<operation> <host> <system>`.
    public func activations(_ host: String) -> [String] {
        ((try? String(contentsOfFile: activationLog(host), encoding: .utf8)) ?? "").split(separator: "\n").map(
            String.init)
    }

    /// What a successful apply writes to the activation log: `switch` is `test` then, once confirmed, `boot`.
    public static func activations(of system: String, host: String, operation: String) -> [String] {
        operation == "switch"
            ? ["test \(host) \(system)", "boot \(host) \(system)"] : ["\(operation) \(host) \(system)"]
    }

    /// The profile's current generation number and system, or nil without a profile.
    public func profileGeneration(_ host: String) throws -> (number: Int, system: String)? {
        guard try FileStatus.of(profile(host)) != nil else { return nil }
        let link = try FileIO.readLink(profile(host))
        guard let number = Int(link.dropFirst("system-".count).dropLast("-link".count)) else { return nil }
        return (number, try FileIO.readLink(FileIO.split(profile(host)).directory + "/" + link))
    }

    public func layout(_ host: String) throws -> ChrootLayout { try fixture.layout(host) }

    /// Names in the host's chroot `logs/`.
    public func uploaded(_ host: String) throws -> [String] { try FileIO.listDirectory(try layout(host).logs).sorted() }

    /// The newest report the host uploaded, decoded.
    public func lastReport(_ host: String) throws -> RunReport? {
        guard let name = try uploaded(host).filter({ $0.hasPrefix("report-") }).last else { return nil }
        return try JSONDecoder().decode(RunReport.self, from: Data(try FileIO.read(try layout(host).logs + "/" + name)))
    }

    public func publish(_ hosts: [String] = []) async throws {
        try await Self.check(fixture.fleet(["publish"] + hosts), "fleet publish")
    }

    /// Replaces a file of the host's chroot as the publisher would: root-owned, readable by the host's group.
    public func plant(_ host: String, _ pathInChroot: String, _ bytes: [UInt8]) throws {
        let path = try layout(host).directory + pathInChroot
        unlink(path)
        let group = Accounts.groupID(named: prefix + host) ?? 0
        try FileIO.writeAtomically(
            bytes, to: path, mode: pathInChroot.hasPrefix("/snapshots") ? 0o640 : 0o644, owner: 0, group: group)
    }

    /// Signs `manifest` with the fleet key and plants it as the host's manifest.
    public func plantManifest(_ host: String, _ manifest: Manifest) throws {
        try plant(
            host, "/manifest",
            try manifest.signed(with: try SigningKeyFile.load(stateDirectory: fixture.stateDirectory)))
    }

    public func manifest(_ host: String) throws -> Manifest { try fixture.verifiedManifest(host) }
}
