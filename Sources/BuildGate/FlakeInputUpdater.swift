import CommandRunner
import NixKit

/// Moves a flake's inputs to their newest revisions with Nix (`nix flake update`, or `nix flake lock
/// --update-input NAME…`), rewriting its `flake.lock` in place. `fleet update` runs it only in a scratch copy
/// of the fleet repository, never in the sysadmin's working tree.
///
/// Inputs are fetched as Nix fetches them: a `git+file://` or `path:` input works offline, a `github:` one
/// needs the network.
public struct FlakeInputUpdater: Sendable {
    public init() {}

    /// The command line. The flake is named `path:<directory>`, not by its directory alone: inside a git
    /// repository Nix would copy the whole repository into the store (every tracked file, whatever it holds)
    /// to read one flake.nix; a `path:` flake is the host's directory only, and Nix still writes its lock back.
    public static func arguments(flake directory: String, inputs: [String]) -> [String] {
        let flake = "path:" + directory
        guard !inputs.isEmpty else { return Nix.flakeFlags + ["flake", "update", flake] }
        // Names were checked (``FlakeLock/isValidInputName(_:)``), so none reads as an option.
        return Nix.flakeFlags + ["flake", "lock"] + inputs.flatMap { ["--update-input", $0] } + [flake]
    }

    /// Updates the inputs of the flake in `directory` (all when `inputs` is empty); nil when Nix did it, else
    /// Nix's error line.
    public func update(flake directory: String, inputs: [String]) async -> String? {
        let arguments = Self.arguments(flake: directory, inputs: inputs)
        do {
            let output = try await Command.run("nix", arguments)
            guard output.succeeded else {
                return "nix \(arguments.dropFirst(Nix.flakeFlags.count).joined(separator: " ")) exited with status "
                    + "\(output.exitCode)" + Nix.cause(ofFailure: output.standardError)
            }
            return nil
        } catch {
            return "\(error)"
        }
    }
}
