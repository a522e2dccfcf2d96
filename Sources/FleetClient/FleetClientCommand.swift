import ArgumentParser
import FleetFiles
import FleetProtocol
import Foundation
import HostAgent

/// `fleet-client`: the host side. `run` pulls and applies this host's configuration; `status` shows what it
/// last did; `serve` is the page with the button.
@main
struct FleetClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet-client",
        abstract: "Pull and apply this host's NixOS configuration from the fleet server.",
        discussion: """
            Exit statuses of `run`: \(Run.exitStatuses)
            """,
        subcommands: [Run.self, Status.self, Check.self, Serve.self, InstallUnits.self, VerifyManifest.self]
    )

    /// Parses and runs the command, with SIGPIPE caught first: a run never dies because whoever reads its
    /// output went away (a closed terminal, `| head`, the page that started it being stopped); its writes
    /// then fail with EPIPE, which it ignores. A handler rather than SIG_IGN, so that the programs it starts
    /// (nix, switch-to-configuration, health checks) get the default disposition back at exec.
    static func main() async {
        signal(SIGPIPE) { _ in }
        do {
            var command = try parseAsRoot()
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// `--config`, shared by the commands that read client.toml.
struct ConfigOption: ParsableArguments {
    @Option(name: .customLong("config"), help: "The client configuration.")
    var path: String = ClientConfiguration.defaultPath

    /// A client.toml that cannot be used is an error (exit status 1, as documented), not a usage error (64):
    /// the arguments were right.
    func load() throws -> ClientConfiguration {
        do {
            return try ClientConfiguration.load(path: path)
        } catch {
            throw ClientError(error.description)
        }
    }
}

extension FleetClientCommand {
    struct Run: AsyncParsableCommand {
        /// Every status `run` can exit with, for `--help` (the README and the units say the same).
        static let exitStatuses = """
            0 unchanged, 10 applied, 11 failed (build or activation; the previous system stays), 12 refused \
            (verification: signature, host, downgrade, snapshot, server host key), 13 unreachable (nothing \
            changed), 14 locked (another run is going), 15 rolled back (not confirmed), 16 local failure (this \
            host: no space left, a state directory it cannot write); 1 any other error (e.g. client.toml \
            unreadable), 64 wrong arguments.
            """

        static let configuration = CommandConfiguration(
            abstract: "Poll the fleet server; when a new generation is published, verify, build, activate, report.",
            discussion: "Exit statuses: \(exitStatuses)")

        @OptionGroup var config: ConfigOption

        func run() async throws {
            let configuration = try config.load()
            let log = RunLog(host: configuration.host.value, limit: configuration.logLimitBytes)
            let result = try await ClientRun(configuration: configuration, log: log).run()
            throw ExitCode(result.outcome.exitStatus)
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the connection and the published manifest without applying anything.",
            discussion: """
                Exit statuses: 0 everything checks out, 11 failed (the identity or host key in client.toml cannot \
                be used, or the server does not serve the snapshot the manifest names), 12 refused \
                (verification: signature, host, downgrade, snapshot, server host key), 13 unreachable, 16 local \
                failure (the snapshot cannot be stored or extracted here: no space, not writable); 1 any other \
                error (client.toml unreadable, --download names an existing path), 64 wrong arguments.
                """)

        @OptionGroup var config: ConfigOption

        @Flag(help: "Stop after connecting and authenticating (no SFTP).")
        var connectOnly = false

        @Option(
            help: ArgumentHelp(
                "Also download the snapshot, check it, and extract it into this directory, which must not exist yet.",
                valueName: "dir"))
        var download: String?

        func run() async throws {
            let configuration = try config.load()
            let log = RunLog(host: configuration.host.value, limit: configuration.logLimitBytes)
            let result = try await ClientRun(configuration: configuration, log: log)
                .check(connectOnly: connectOnly, downloadInto: download)
            log.phase("\(result.outcome == .unchanged ? "ok" : result.outcome.rawValue): \(result.reason)")
            throw ExitCode(result.outcome.exitStatus)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show what this host last applied and saw.")

        @OptionGroup var config: ConfigOption

        @Flag(help: "Print the state as JSON.")
        var json = false

        func run() async throws {
            let configuration = try config.load()
            let state = try ClientState.load(stateDirectory: configuration.stateDirectory)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let status = ClientStatus(host: configuration.host.value, state: state)
                print(String(decoding: try encoder.encode(status), as: UTF8.self))
                return
            }
            print(ClientStatus(host: configuration.host.value, state: state).text)
        }
    }

    struct VerifyManifest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify a manifest file's signature and host, and print its payload.")

        @Argument(help: "The manifest file (as fetched from the chroot).")
        var file: String

        @Option(help: "The fleet public key, name:base64 (the server's signing.pub).")
        var publicKey: String

        @Option(help: "The host this manifest must be for.")
        var host: String

        func run() async throws {
            let key = try VerifyingKey(nixFormat: publicKey)
            let expected = try HostName(host)
            let manifest = try Manifest.verify(try FileIO.readNoFollow(file, limit: Manifest.sizeLimit), with: key)
            guard manifest.host == expected else {
                throw ValidationError("\(file) is for host \(manifest.host), not \(expected): refused")
            }
            print(String(decoding: try manifest.payload(), as: UTF8.self))
        }
    }
}
