import FleetFiles
import FleetTestSupport
import Foundation
import Testing

/// The check the secrets tests rely on: a secret made after the store was listed is found in a store path made
/// since, and a secret that is nowhere is not.
@Suite("Secrets in the Nix store: the paths made since")
struct NixStoreEntriesTests {
    @Test func aSecretInAStorePathMadeSinceIsFoundAndOneNowhereIsNot() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let store = try NixStoreEntries()
        let (leaked, kept) = ("SECRET-" + UUID().uuidString, "SECRET-" + UUID().uuidString)
        try FileIO.writeAtomically(Array("token = \(leaked)\n".utf8), to: directory.path + "/leak")
        let added = try TestCommand.run("/usr/bin/nix-store", ["--add", directory.path + "/leak"])
        #expect(added.succeeded, "\(added.standardError)")
        let path = added.standardOutput.trimmingCharacters(in: .newlines)
        #expect(try store.added().contains(path))
        #expect(try store.filesHolding([leaked]) == [path])
        #expect(try store.filesHolding([kept]).isEmpty)
    }
}
