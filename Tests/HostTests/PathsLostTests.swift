import FleetFiles
import FleetTestSupport
import Foundation
import Testing

@testable import HostAgent

/// After a failed substitution from the local cache: which paths of the closure the store lost during the run (it
/// held them when the walk asked, so the cache has no narinfo for them), which makes the failure the machine's.
@Suite("Paths the store lost during a run")
struct PathsLostTests {
    @Test func aPathNeitherInTheLocalCacheNorInTheStoreIsLostAndAValidOneIsNot() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try FileIO.writeAtomically(Array("held \(UUID().uuidString)\n".utf8), to: directory.path + "/held")
        let added = try TestCommand.run("/usr/bin/nix-store", ["--add", directory.path + "/held"])
        #expect(added.succeeded, "\(added.standardError)")
        let valid = added.standardOutput.trimmingCharacters(in: .newlines)
        let (top, lost, fetched) = (
            "/nix/store/0123456789abcdfghijklmnpqrsvwxy0-top", "/nix/store/0123456789abcdfghijklmnpqrsvwxy1-lost",
            "/nix/store/0123456789abcdfghijklmnpqrsvwxy2-fetched"
        )
        let cache = directory.path + "/cache"
        try FileIO.createDirectories(cache)
        func narinfo(_ path: String, references: [String]) throws {
            let hash = String(path.dropFirst(11).prefix(32))
            let text =
                "StorePath: \(path)\nURL: nar/\(hash).nar\nReferences: "
                + references.map { String($0.dropFirst(11)) }.joined(separator: " ") + "\n"
            try FileIO.writeAtomically(Array(text.utf8), to: cache + "/" + hash + ".narinfo")
        }
        try narinfo(top, references: [fetched, lost, valid])
        try narinfo(fetched, references: [])

        #expect(NixSystem.unprovidedPaths(below: top, cache: cache) == [lost, valid].sorted())
        #expect(await NixSystem.pathsLost(below: top, cache: cache) == [lost])
        // With no narinfo for the toplevel, it is needed from the store too.
        try FileIO.removeFile(cache + "/" + String(top.dropFirst(11).prefix(32)) + ".narinfo")
        #expect(await NixSystem.pathsLost(below: top, cache: cache) == [top])
    }
}
