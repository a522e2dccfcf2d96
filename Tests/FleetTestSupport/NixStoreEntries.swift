import Foundation

/// The names in `/nix/store` at one moment. A secret made after it can only be in a store path made after it, so a
/// check that no secret reached the store reads those paths (``added()``) rather than every closure that earlier
/// tests and benches left in the store.
public struct NixStoreEntries: Sendable {
    public static let store = "/nix/store"
    public let names: Set<String>

    public init() throws {
        names = Set(try FileManager.default.contentsOfDirectory(atPath: Self.store))
    }

    /// The store paths (and other entries, such as `.links`) made since, sorted.
    public func added() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: Self.store).filter { !names.contains($0) }.sorted().map {
            Self.store + "/" + $0
        }
    }

    /// `grep -rlF` for each of `secrets` in the paths made since: the files that hold one (empty when none does).
    /// A path another test deleted while grep read it is not a finding.
    public func filesHolding(_ secrets: [String]) throws -> [String] {
        let paths = try added()
        guard !paths.isEmpty else { return [] }
        var found: [String] = []
        for secret in secrets {
            let grep = try TestCommand.run("/bin/grep", ["-rlF", "--", secret] + paths)
            let vanished = grep.standardError.split(separator: "\n").allSatisfy {
                $0.hasSuffix("No such file or directory")
            }
            guard grep.status == 0 || grep.status == 1 || (grep.status == 2 && vanished) else {
                throw TestSupportError("grep -rlF in the store failed (\(grep.status)): \(grep.standardError)")
            }
            found += grep.standardOutput.split(separator: "\n").map(String.init)
        }
        return found
    }
}
