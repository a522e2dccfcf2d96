import Synchronization

/// Directories already resolved in this publish, by real path, so that `common/` (reached through every
/// host's `common -> ../../common`) is listed, stat'ed and hashed once per publish instead of once per host.
///
/// Only a directory whose walk met no link and no problem is kept. Such a walk depends on nothing but the
/// directory itself: the link policy (which depends on the host) and the cycle check (which depends on the
/// path taken) apply to links alone, and the link leading into the directory is still checked for every
/// host before the cache is consulted. A directory holding a link is walked again for each host.
final class SubtreeCache: Sendable {
    /// A resolved directory's entries, as the walk that found them named them: under `archive` (`tree/common`:
    /// `tree/common/base.nix`, `tree/common/profiles`, …).
    struct Subtree: Sendable {
        let archive: String
        let entries: [ResolvedTree.Entry]
        let bytes: Int64
    }

    private let subtrees = Mutex<[String: Subtree]>([:])

    func subtree(at realPath: String) -> Subtree? {
        subtrees.withLock { $0[realPath] }
    }

    func remember(_ subtree: Subtree, at realPath: String) {
        subtrees.withLock { $0[realPath] = subtree }
    }
}
