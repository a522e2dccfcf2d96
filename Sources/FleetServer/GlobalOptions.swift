import ArgumentParser
import FleetFiles
import Foundation
import Inventory

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(help: "The fleet repository (holding fleet.toml).")
    var repo: String = "."

    @Option(help: ArgumentHelp("Chroot root, over FLEET_CHROOT_ROOT and fleet.toml.", valueName: "dir"))
    var chrootRoot: String?

    @Option(help: ArgumentHelp("State directory, over FLEET_STATE_DIR and fleet.toml.", valueName: "dir"))
    var stateDir: String?

    /// fleet.toml with the overrides applied: flag, then environment, then the file.
    func loadConfiguration() throws -> FleetConfiguration {
        let environment = ProcessInfo.processInfo.environment
        func override(_ flag: String?, _ flagName: String, _ variable: String) -> (path: String, source: String)? {
            if let flag { return (flag, flagName) }
            guard let value = environment[variable], !value.isEmpty else { return nil }
            return (value, variable)
        }
        return try FleetConfiguration.load(repository: repo).overriding(
            chrootRoot: override(chrootRoot, "--chroot-root", "FLEET_CHROOT_ROOT"),
            stateDirectory: override(stateDir, "--state-dir", "FLEET_STATE_DIR"))
    }

    /// The state directory for `fleet init`: the flag, then FLEET_STATE_DIR, then `state_dir` of the
    /// repository's fleet.toml when it has one, then /var/lib/fleet. A fleet.toml that does not load is an error:
    /// a key made elsewhere would leave `fleet publish` without one.
    func stateDirectory(initialising repository: String) throws -> String {
        let environment = ProcessInfo.processInfo.environment["FLEET_STATE_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        if let explicit = stateDir ?? environment { return FileIO.absolute(explicit) }
        guard FileManager.default.fileExists(atPath: repository + "/" + FleetConfiguration.fileName) else {
            return "/var/lib/fleet"
        }
        return try FleetConfiguration.load(repository: repository).server.stateDirectory
    }
}

/// A failure while a command runs (not a usage error: those are ArgumentParser's ValidationError, exit 64):
/// printed as `Error: …`, exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) { self.description = description }
}

/// Prints values as JSON with sorted keys, for scripts.
func printJSON(_ value: some Encodable) throws {
    print(try jsonText(value))
}

/// JSON with sorted keys: pretty, or on one line (for streams of objects).
func jsonText(_ value: some Encodable, pretty: Bool = true) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    if pretty { encoder.outputFormatting.insert(.prettyPrinted) }
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// Writes a line to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
