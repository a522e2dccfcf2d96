import Foundation

/// What `fleet update` reads of a host's `flake.lock`: its root's inputs and the revision each is locked at.
///
/// Only the root's direct inputs count: they are what `--input NAME` names and what Nix's `--update-input`
/// takes. Inputs of inputs (and `follows`) move with them.
public struct FlakeLock: Sendable, Equatable {
    /// One root input: its name, and what says which revision is locked (git's `rev`, else the `narHash`).
    public struct Input: Sendable, Equatable, Codable {
        public var name: String
        public var revision: String

        public init(name: String, revision: String) {
            self.name = name
            self.revision = revision
        }

        /// The revision as a commit message shows it: 12 characters of a git revision, a hash otherwise.
        public var shortRevision: String {
            revision.allSatisfy(\.isHexDigit) ? String(revision.prefix(12)) : revision
        }
    }

    /// The root's inputs, sorted by name.
    public let inputs: [Input]

    /// The largest lock file read: a lock is a few kilobytes even for a large flake.
    public static let sizeLimit = 4 << 20

    /// The rule for an input name on the command line: Nix's identifiers without quotes, so that no name can
    /// be read as a path, an option or a flake reference.
    public static let inputNameRule = "a letter, then letters, digits, '-' or '_' (at most 64)"

    public static func isValidInputName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 64,
            ("a"..."z").contains(first) || ("A"..."Z").contains(first)
        else { return false }
        return name.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_"
        }
    }

    /// Parses the lock's JSON; nil when it is not a flake lock this can read (the message says why).
    public static func parse(_ bytes: [UInt8]) -> Result<FlakeLock, LockProblem> {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            let nodes = object["nodes"] as? [String: Any]
        else { return .failure(LockProblem(description: "not a flake lock (no \"nodes\" object)")) }
        let rootName = object["root"] as? String ?? "root"
        guard let root = nodes[rootName] as? [String: Any] else {
            return .failure(LockProblem(description: "its root node \(String(reflecting: rootName)) is missing"))
        }
        var inputs: [Input] = []
        for (name, reference) in root["inputs"] as? [String: Any] ?? [:] {
            // A `follows` is a list of names: it has no lock of its own.
            guard let nodeName = reference as? String, let node = nodes[nodeName] as? [String: Any] else { continue }
            let locked = node["locked"] as? [String: Any] ?? [:]
            let revision = locked["rev"] as? String ?? locked["narHash"] as? String ?? "unlocked"
            inputs.append(Input(name: name, revision: revision))
        }
        return .success(FlakeLock(inputs: inputs.sorted { $0.name < $1.name }))
    }

    public init(inputs: [Input]) {
        self.inputs = inputs
    }

    public var names: [String] { inputs.map(\.name) }

    public func revision(of name: String) -> String? { inputs.first { $0.name == name }?.revision }

    /// Why a lock file could not be read.
    public struct LockProblem: Error, Sendable, CustomStringConvertible {
        public let description: String
    }
}
