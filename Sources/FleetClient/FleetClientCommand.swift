import ArgumentParser
import ClientStateStore
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
        // `fleet-client --version`: the version and the commit it was built from (SourceCommitPlugin).
        version: FleetVersion.versionLine(program: "fleet-client", commit: SourceCommit.value),
        subcommands: [
            Run.self, Status.self, Check.self, Serve.self, InstallUnits.self, VerifyManifest.self, OverlayCommand.self,
        ]
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
            host: no space left, a state directory it cannot write), 17 stale (the manifest expired: a stale \
            mirror or a replay); 1 any other error (e.g. client.toml unreadable), 64 wrong arguments.
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
                failure (the snapshot cannot be stored or extracted here: no space, not writable), 17 stale (the \
                manifest expired); 1 any other \
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

    /// For the sysadmin: is this manifest (in a chroot, a mirror, a copy) one the fleet signed for this host,
    /// and, with `--check-snapshot`, is the snapshot beside it the one it names?
    struct VerifyManifest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify-manifest",
            abstract: "Verify a manifest file's signature and host, and print its payload.",
            discussion: """
                Checks the file as a host would before applying it: its size, its two lines, the signature \
                against the fleet public key, and the host it is for; then prints the payload (JSON). With \
                --check-snapshot, the snapshot it names must be beside it as in a chroot \
                (<dir>/snapshots/<generation>.tar.zst) with the size and SHA-256 the manifest says. Exit \
                statuses: 0 verified, 12 refused (with the reason on standard error), 1 the file cannot be read.
                """)

        @Argument(help: "The manifest file (e.g. /srv/fleet/<host>/manifest on the server).")
        var file: String

        @Option(help: ArgumentHelp("The fleet public key, name:base64.", valueName: "key"))
        var publicKey: String?

        @Option(help: ArgumentHelp("A file holding it (the server's signing.pub).", valueName: "file"))
        var publicKeyFile: String?

        @Option(help: "The host this manifest must be for.")
        var host: String

        @Flag(help: "Also check the snapshot the manifest names, beside it as in a chroot.")
        var checkSnapshot = false

        func validate() throws {
            guard (publicKey == nil) != (publicKeyFile == nil) else {
                throw ValidationError("give the fleet public key with either --public-key or --public-key-file")
            }
            if let publicKey {
                do { _ = try VerifyingKey(nixFormat: publicKey) } catch {
                    throw ValidationError("--public-key: \(error)")
                }
            }
            do { _ = try HostName(host) } catch { throw ValidationError("--host: \(error)") }
        }

        func run() async throws {
            let keyText: String
            if let publicKeyFile {
                do {
                    keyText = String(decoding: try FileIO.read(publicKeyFile, limit: 4096), as: UTF8.self)
                } catch {
                    printError("cannot read the fleet public key \(publicKeyFile): \(error)")
                    throw ExitCode(1)
                }
            } else {
                keyText = publicKey ?? ""
            }
            let key: VerifyingKey
            do { key = try VerifyingKey(nixFormat: keyText) } catch {
                printError("\(publicKeyFile ?? "--public-key"): not a fleet public key: \(error)")
                throw ExitCode(1)
            }
            let expected = try HostName(host)
            func refuse(_ reason: String) -> ExitCode {
                printError("refused: \(file): \(reason)")
                return ExitCode(RunOutcome.refused.exitStatus)
            }
            guard (try? FileStatus.of(file)) ?? nil != nil else {
                printError("cannot read \(file): no such file")
                throw ExitCode(1)
            }
            // Read as a host reads it: a link, a device or fifo, or an oversized file is refused, not followed.
            let bytes: [UInt8]
            do { bytes = try FileIO.readNoFollow(file, limit: Manifest.sizeLimit) } catch { throw refuse("\(error)") }
            let manifest: Manifest
            do { manifest = try Manifest.verify(bytes, with: key) } catch { throw refuse("\(error)") }
            guard manifest.host == expected else {
                throw refuse("it is for host \(manifest.host), not \(expected)")
            }
            if checkSnapshot {
                let expectedPath = ChrootPaths.snapshot(manifest.generation)
                guard manifest.snapshot.path == expectedPath else {
                    throw refuse("it names the snapshot \(quoted(manifest.snapshot.path)), not \(expectedPath)")
                }
                let directory = FileIO.split(file).directory
                let snapshot = directory + expectedPath
                guard let status = try? FileStatus.of(snapshot), status.kind == .regular else {
                    throw refuse("its snapshot \(snapshot) is missing (or not a regular file)")
                }
                guard status.size == manifest.snapshot.size else {
                    throw refuse(
                        "its snapshot \(snapshot) has \(status.size) bytes, and the manifest says \(manifest.snapshot.size)"
                    )
                }
                guard let digest = try? SHA256Hasher.hex(ofFile: snapshot) else {
                    printError("cannot read \(snapshot)")
                    throw ExitCode(1)
                }
                guard digest == manifest.snapshot.sha256 else {
                    throw refuse(
                        "its snapshot \(snapshot) has SHA-256 \(digest), and the manifest says \(manifest.snapshot.sha256)"
                    )
                }
            }
            print(String(decoding: try manifest.payload(), as: UTF8.self))
        }
    }
}
