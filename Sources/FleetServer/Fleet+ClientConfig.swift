import ArgumentParser
import FleetFiles
import FleetProtocol
import Foundation
import Inventory
import Publishing

extension Fleet {
    struct ClientConfig: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "client-config",
            abstract: "Print a ready /etc/fleet/client.toml for a host.",
            discussion: """
                The server's address, port and host key come from fleet.toml's [server] table (host_key), or \
                from --server-address, --port and --host-public-key; the fleet public key from the state \
                directory's signing.pub; poll_interval_seconds (the host's timer, which fleet-client install-units \
                and the NixOS module read from client.toml) from the host's poll_interval_seconds in fleet.toml.
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The host, as named in fleet.toml.")
        var host: String

        @Option(
            help: ArgumentHelp(
                "The server's SSH public host key file (…_key.pub), over fleet.toml's [server] host_key.",
                valueName: "file"))
        var hostPublicKey: String?

        /// The old spelling of `--host-public-key`.
        @Option(name: .customLong("host-key-file"), help: .hidden)
        var oldHostKeyFile: String?

        @Option(
            help: ArgumentHelp(
                "The address the host connects to, over fleet.toml's [server] address.", valueName: "host"))
        var serverAddress: String?

        @Option(help: ArgumentHelp("The SSH port, over fleet.toml's [server] port.", valueName: "port"))
        var port: Int?

        @Option(help: ArgumentHelp("The private key the host logs in with.", valueName: "file"))
        var identityFile: String = ClientConfiguration.defaultIdentityFile

        @Option(help: ArgumentHelp("The host's fleet-client state directory.", valueName: "dir"))
        var clientStateDir: String = ClientConfiguration.defaultStateDirectory

        @Option(help: ArgumentHelp("The host's system profile.", valueName: "path"))
        var profile: String = ClientConfiguration.defaultProfile

        func validate() throws {
            if hostPublicKey != nil && oldHostKeyFile != nil {
                throw ValidationError("--host-key-file is the old spelling of --host-public-key: give one")
            }
            if let port, !(1...65535).contains(port) { throw ValidationError("--port must be in 1...65535") }
            // What client.toml would refuse at load on the host is refused here, by its flag.
            if let serverAddress, let problem = ServerAddress.problem(serverAddress) {
                throw ValidationError("--server-address: \(problem)")
            }
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let selected = try configuration.selecting([host])[0]
            let hostKey: SSHPublicKey
            if let file = hostPublicKey ?? oldHostKeyFile {
                hostKey = try KeyFileKind.publicKey(file, flag: "--host-public-key")
            } else if let key = configuration.server.hostKey {
                hostKey = key
            } else {
                throw CommandFailure(
                    "\(configuration.file): [server] has no host_key, which every client pins; set it to the line of "
                        + "the server's /etc/ssh/ssh_host_ed25519_key.pub, or pass --host-public-key")
            }
            let publicKeyPath = configuration.server.stateDirectory + "/" + SigningKeyFile.publicName
            let fleetKey: VerifyingKey
            do {
                fleetKey = try VerifyingKey(
                    nixFormat: String(decoding: try FileIO.read(publicKeyPath, limit: 4096), as: UTF8.self))
            } catch {
                throw CommandFailure(
                    "cannot read the fleet public key \(publicKeyPath): \(error) (`fleet init` makes it)")
            }
            // The host's timer is set from client.toml, so fleet.toml's interval for it goes there: one value,
            // which the host then reports back with every poll.
            let range = ClientConfiguration.pollIntervalRange
            guard range.contains(selected.pollIntervalSeconds) else {
                throw CommandFailure(
                    "\(configuration.file): [hosts.\(selected.name)] polls every \(selected.pollIntervalSeconds) s, but a "
                        + "host's timer takes \(range.lowerBound)…\(range.upperBound) s: set poll_interval_seconds "
                        + "(in [hosts.\(selected.name)] or [defaults]) within that")
            }
            let primary = ClientConfiguration.Server(
                address: serverAddress ?? configuration.server.address, port: port ?? configuration.server.port,
                user: selected.unixUser, hostKey: hostKey)
            // fleet.toml's [[mirrors]] become client.toml's [[servers]], in order: the host fails over to them.
            guard configuration.mirrors.count <= ClientConfiguration.mirrorLimit else {
                throw CommandFailure(
                    "\(configuration.file): \(configuration.mirrors.count) [[mirrors]], but a client.toml takes at most "
                        + "\(ClientConfiguration.mirrorLimit) servers besides [server]: remove some")
            }
            var mirrors: [ClientConfiguration.Mirror] = []
            for mirror in configuration.mirrors {
                if mirror.address == primary.address && mirror.port == primary.port {
                    throw CommandFailure(
                        "\(configuration.file): mirror \(mirror.name) has the address and port of the server the host "
                            + "connects to first (\(primary.address) port \(primary.port)): give the mirror its own")
                }
                mirrors.append(
                    .init(name: mirror.name, address: mirror.address, port: mirror.port, hostKey: mirror.hostKey))
            }
            let client = ClientConfiguration(
                host: selected.name, server: primary,
                fleetPublicKey: fleetKey, identityFile: identityFile, stateDirectory: clientStateDir, profile: profile,
                pollIntervalSeconds: selected.pollIntervalSeconds, mirrors: mirrors)
            let text = client.rendered()
            // What is printed must parse back the same: the client reads it with the same code.
            guard (try? ClientConfiguration.parse(text, file: "client.toml")) == client else {
                throw CommandFailure(
                    "internal error: the rendered client.toml for \(selected.name) does not parse back")
            }
            print(text, terminator: "")
        }
    }
}
