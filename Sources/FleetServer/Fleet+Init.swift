import ArgumentParser
import ChrootSync
import FleetProtocol
import Inventory

extension Fleet {
    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a fleet repository skeleton and the fleet signing key.",
            discussion:
                "Existing files are kept. The signing key goes to the state directory (--state-dir, FLEET_STATE_DIR, or "
                + "fleet.toml's state_dir), never into the repository.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "Directory of the new fleet repository (default: --repo).")
        var directory: String?

        @Option(help: "Name of the signing key, as Nix key names go (e.g. fleet.example.org-1).")
        var keyName: String = "fleet-1"

        @Flag(help: "Only generate the signing key; write nothing into the repository.")
        var keyOnly = false

        func run() async throws {
            if !keyOnly {
                let (created, kept) = try RepositoryScaffold.create(at: directory ?? global.repo)
                for path in created { print("created \(path)") }
                for path in kept { print("kept    \(path) (exists)") }
            }
            let stateDirectory = try global.stateDirectory(initialising: directory ?? global.repo)
            let (key, isNew) = try SigningKeyFile.generateIfMissing(stateDirectory: stateDirectory, name: keyName)
            print(
                isNew
                    ? "created signing key \(stateDirectory)/\(SigningKeyFile.secretName) (0600)"
                    : "kept    signing key \(stateDirectory)/\(SigningKeyFile.secretName) (exists)")
            print("fleet public key: \(key.publicKey.nixFormat)")
            print("Next: put each host's SSH key in fleet.toml, then `fleet setup` and `fleet publish`.")
        }
    }
}
