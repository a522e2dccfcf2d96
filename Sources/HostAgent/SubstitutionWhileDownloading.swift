import NixKit

/// Substitutes a closure into the Nix store batch by batch while the rest of it still downloads, so that
/// unpacking overlaps the transfer instead of following it: on a fast link the two take about as long, and the
/// first apply of a new host pays for both.
///
/// ``CacheFetch`` downloads the NARs in dependencies-first order (``DependencyOrder``) and hands over each batch's
/// store paths once their files are in place, so every path handed over has its whole closure either in the
/// store or in the local cache. Batches are substituted one after another, each with the same options, checks
/// and trusted key as the substitution of the toplevel that follows the download
/// (``NixSystem/realise(_:cache:trustedKey:gcRoot:)``), which stays the one that decides: whatever did not get
/// into the store here (a batch that failed) it substitutes again, or fails with Nix's own message.
struct SubstitutionWhileDownloading: Sendable {
    let system: NixSystem
    let cache: String
    let trustedKey: String
    let log: RunLog

    /// What the substitution did while the download ran.
    struct Summary: Sendable {
        var paths = 0
        var batches = 0
        /// The batch that failed, and why; the batches after it were not tried.
        var failure: String?
    }

    /// Substitutes each batch as it arrives until the stream ends. After a failure it only drains the stream:
    /// the download goes on, and the substitution after it reports what is wrong.
    func substitute(_ batches: AsyncStream<[String]>) async -> Summary {
        var summary = Summary()
        let options = await system.substitutionOptions(cache: cache, trustedKey: trustedKey)
        for await paths in batches where summary.failure == nil && !paths.isEmpty {
            summary.batches += 1
            do throws(NixSystem.Failure) {
                try await system.realiseBatch(paths, number: summary.batches, options: options, cache: cache)
                summary.paths += paths.count
            } catch {
                summary.failure = "batch \(summary.batches) (\(paths.count) path(s)): \(error)"
                log.phase(
                    "substituting while downloading stopped at batch \(summary.batches): \(error); the download "
                        + "goes on, and the substitution after it tries the rest again")
            }
        }
        return summary
    }
}
