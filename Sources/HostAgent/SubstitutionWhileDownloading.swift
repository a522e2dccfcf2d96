import FleetFiles
import Foundation
import NixKit

/// Substitutes a closure into the Nix store batch by batch while the rest of it still downloads, so that
/// unpacking overlaps the transfer instead of following it: on a fast link the two take about as long, and the
/// first apply of a new host pays for both.
///
/// ``CacheFetch`` downloads the NARs in dependencies-first order (``DependencyOrder``) and hands over each batch's
/// store paths once their files are in place, so every path handed over has its whole closure either in the
/// store or in the local cache. Once a batch is in the store, the NAR files only it needed are emptied at once: the
/// local cache never holds more than the batches in flight, and freeing it is not left for after the last one.
/// They are truncated, not removed (``CacheFetch/empty(_:)`` removes the names at the end): on ext4 without a
/// journal every file made in the seconds after an unlink skips the inodes freed recently, which Nix, making the
/// closure's files meanwhile, would pay for. Batches are substituted one after another, each with the same options, checks
/// and trusted key as the substitution of the toplevel that follows the download
/// (``NixSystem/realise(_:cache:trustedKey:gcRoot:)``), which stays the one that decides: whatever did not get
/// into the store here (a batch that failed) it substitutes again, or fails with Nix's own message.
struct SubstitutionWhileDownloading: Sendable {
    let system: NixSystem
    let cache: String
    let trustedKey: String
    let log: RunLog
    /// This run's own root names: a run that failed left its roots, which hold what it substituted (the next
    /// walk finds those paths valid and fetches them no more); reusing the names would drop them mid-run.
    let run = String(UUID().uuidString.prefix(8)).lowercased()

    /// Store paths whose closures are in the store or the local cache, and the local cache's NAR files that only
    /// they need (no path of another batch shares them).
    struct Batch: Sendable {
        let paths: [String]
        let narFiles: [String]
        /// The paths no other path of the batch refers to: the ones named to `nix-store --realise`, which
        /// substitutes the others as part of their closures, and rooted, which holds the others too. A closure of
        /// real shape has about 0.4 heads per path, so about 60 % fewer GC roots to make and remove.
        let heads: [String]

        /// - Parameter paths: each path of the batch with the store paths it refers to.
        init(paths: [(path: String, references: [String])], narFiles: [String]) {
            self.paths = paths.map(\.path)
            self.narFiles = narFiles
            let members = Set(self.paths)
            var referenced: Set<String> = []
            for path in paths {
                for reference in path.references where reference != path.path && members.contains(reference) {
                    referenced.insert(reference)
                }
            }
            heads = self.paths.filter { !referenced.contains($0) }
        }
    }

    /// What the substitution did while the download ran.
    struct Summary: Sendable {
        var paths = 0
        var batches = 0
        /// The batch that failed, and why; the batches after it were not tried.
        var failure: String?
    }

    /// Substitutes each batch as it arrives until the stream ends, ``concurrentBatches`` at a time. After a
    /// failure it only drains the stream: the download goes on, and the substitution after it reports what is
    /// wrong.
    func substitute(_ batches: AsyncStream<Batch>) async -> Summary {
        let options = await system.substitutionOptions(cache: cache, trustedKey: trustedKey)
        return await withTaskGroup(of: (number: Int, paths: Int, failure: String?).self) { group in
            var summary = Summary()
            var running = 0
            func record(_ done: (number: Int, paths: Int, failure: String?)) {
                running -= 1
                if let failure = done.failure, summary.failure == nil {
                    summary.failure = "batch \(done.number) (\(done.paths) path(s)): \(failure)"
                    log.phase(
                        "substituting while downloading stopped at batch \(done.number): \(failure); the download "
                            + "goes on, and the substitution after it tries the rest again")
                } else if done.failure == nil {
                    summary.paths += done.paths
                }
            }
            var started = 0
            for await batch in batches where summary.failure == nil && !batch.paths.isEmpty {
                while running >= Self.concurrentBatches, let done = await group.next() { record(done) }
                guard summary.failure == nil else { continue }
                started += 1
                running += 1
                let number = started
                group.addTask {
                    do throws(NixSystem.Failure) {
                        try await system.realiseBatch(
                            batch.heads, root: "run-\(run)-batch-\(number)", options: options, cache: cache)
                    } catch {
                        return (number, batch.paths.count, "\(error)")
                    }
                    // In the store now; a batch that failed keeps its files for the substitution after the download.
                    for file in batch.narFiles { _ = try? FileIO.truncateToEmpty(file) }
                    return (number, batch.paths.count, nil)
                }
            }
            while let done = await group.next() { record(done) }
            summary.batches = started
            return summary
        }
    }

    /// Roots `paths`, which the store holds already, as the batches are rooted: the walk found them valid and
    /// fetched nothing below them, so a garbage collection before the toplevel is realised would leave its
    /// closure incomplete (the run would then fail, saying so). In as few pieces as the command line allows
    /// (``PathArguments``), one root each.
    ///
    /// - Returns: why they could not all be rooted, or nil.
    func hold(_ paths: [String]) async -> String? {
        let options = await system.substitutionOptions(cache: cache, trustedKey: trustedKey)
        let root = { (piece: Int) in "run-\(run)-held-\(piece)" }
        let longestRoot = NixSystem.batchRoots(cache: cache) + "/" + root(paths.count)
        let pieces = PathArguments.split(
            paths, besides: ["nix-store", "--realise", "--add-root", longestRoot] + options)
        for (index, piece) in pieces.enumerated() {
            do throws(NixSystem.Failure) {
                try await system.realiseBatch(piece, root: root(index + 1), options: options, cache: cache)
            } catch {
                return "\(error)"
            }
        }
        return nil
    }

    /// Two `nix-store --realise` at once: one substitutes with about one core (it unpacks and hashes in one
    /// thread), so a second uses the other core once the download no longer needs it. A batch that needs a path of
    /// the one before it still in progress waits on Nix's lock of that path, or substitutes it itself.
    static let concurrentBatches = 2
}
