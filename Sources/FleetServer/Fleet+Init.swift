import ArgumentParser
import FleetFiles
import FleetProtocol
import Foundation
import Inventory
import Publishing

extension Fleet {
    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a fleet repository skeleton and the fleet signing key.",
            discussion:
                "In a new or empty directory, a skeleton with an example host; in an existing repository (a fleet.toml, "
                + "or anything in hosts/) nothing is written. The signing key goes to the state directory (--state-dir, "
                + "FLEET_STATE_DIR, or fleet.toml's state_dir), never into the repository; a --state-dir or "
                + "--chroot-root given here is written into the new fleet.toml.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "Directory of the new fleet repository (default: --repo).")
        var directory: String?

        @Option(help: "Name of the signing key, as Nix key names go (e.g. fleet.example.org-1).")
        var keyName: String = "fleet-1"

        @Flag(help: "Only generate the signing key; write nothing into the repository.")
        var keyOnly = false

        func run() async throws {
            let repository = directory ?? global.repo
            let environment = ProcessInfo.processInfo.environment
            func explicit(_ flag: String?, _ variable: String) -> String? {
                (flag ?? environment[variable].flatMap { $0.isEmpty ? nil : $0 }).map(FileIO.absolute)
            }
            let explicitStateDirectory = explicit(global.stateDir, "FLEET_STATE_DIR")
            if !keyOnly {
                let outcome = try RepositoryScaffold.create(
                    at: repository, stateDirectory: explicitStateDirectory,
                    chrootRoot: explicit(global.chrootRoot, "FLEET_CHROOT_ROOT"))
                if let existing = outcome.existing {
                    print("existing fleet repository (\(existing)): nothing written into it")
                }
                for path in outcome.created { print("created \(path)") }
                for path in outcome.kept { print("kept    \(path) (exists)") }
            }
            let stateDirectory = try global.stateDirectory(initialising: repository)
            let (key, isNew) = try SigningKeyFile.generateIfMissing(stateDirectory: stateDirectory, name: keyName)
            print(
                isNew
                    ? "created signing key \(stateDirectory)/\(SigningKeyFile.secretName) (0600)"
                    : "kept    signing key \(stateDirectory)/\(SigningKeyFile.secretName) (exists)")
            print("fleet public key: \(key.publicKey.nixFormat)")
            // A key made elsewhere than fleet.toml says is only found with the same flag or variable every time.
            if let explicitStateDirectory,
                let configured = try? FleetConfiguration.load(repository: repository).server.stateDirectory,
                configured != explicitStateDirectory
            {
                // Given by FLEET_STATE_DIR, the same variable reaches every later command of this shell: a note.
                let fromFlag = global.stateDir != nil
                printError(
                    (fromFlag ? "warning: " : "note: ")
                        + "\(repository)/\(FleetConfiguration.fileName) says state_dir = \"\(configured)\", but the "
                        + "key is in \(explicitStateDirectory): set state_dir = \"\(explicitStateDirectory)\" there, or "
                        + (fromFlag
                            ? "pass --state-dir \(explicitStateDirectory) to every fleet command"
                            : "keep FLEET_STATE_DIR=\(explicitStateDirectory) set for every fleet command"))
            }
            print("Next: put each host's SSH key in fleet.toml, then `fleet setup` and `fleet publish`.")
        }
    }
}
