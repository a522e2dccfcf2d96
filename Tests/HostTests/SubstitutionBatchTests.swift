import Testing

@testable import HostAgent

/// Which paths of a batch are named to `nix-store --realise` and rooted: those no other path of the batch refers
/// to. Substituting them substitutes the rest, which lies in their closures.
@Suite("Batches substituted while downloading")
struct SubstitutionBatchTests {
    static func path(_ name: String) -> String { "/nix/store/" + String(repeating: "a", count: 32) + "-" + name }

    @Test func onlyThePathsNoOtherPathOfTheBatchRefersToAreHeads() {
        let (a, b, c, d, outside) = (Self.path("a"), Self.path("b"), Self.path("c"), Self.path("d"), Self.path("x"))
        // In dependencies-first order: c, then b (refers to c and to a path of an earlier batch), a (refers to b
        // and to itself), and d, which nothing refers to.
        let batch = SubstitutionWhileDownloading.Batch(
            paths: [(c, []), (b, [c, outside]), (a, [a, b]), (d, [])], narFiles: ["nar/x.nar"])
        #expect(batch.paths == [c, b, a, d])
        #expect(batch.heads == [a, d])
        #expect(batch.narFiles == ["nar/x.nar"])

        // A path that refers only to itself, or to paths outside the batch, is a head.
        let alone = SubstitutionWhileDownloading.Batch(paths: [(a, [a]), (b, [outside])], narFiles: [])
        #expect(alone.heads == [a, b])
    }
}
