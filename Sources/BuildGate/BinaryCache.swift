import FleetFiles
import Foundation
import NixKit

/// A host's binary cache in its chroot (`cache/`): hard links to the ``CachePool``'s entries (``CacheEntry``,
/// named by the store path's hash part) of exactly the closures of its served systems; and the collection of
/// the links that no published generation needs any more.
public struct BinaryCache: Sendable {
    /// Why a host's cache could not be made; the host is then not published (its generation stays).
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// Deletes the entries (links into the pool) that the closures of `toplevels` (the systems of the
    /// generations still served) do not need, and everything else in the cache: the narinfo files, `nix-cache-info`
    /// and temporary files an older fleet or an interrupted publish left, and the files of its directories
    /// (`nar/`, and the empty `log/`, `realisations/`), which go too when that empties them. The closure is read
    /// from the entries' own narinfos. The pool's copy goes at the pool's collection, once no host links it.
    /// When an entry those closures need is missing or its narinfo cannot be read (damaged), what lies below it
    /// is unknown: nothing is removed, and the removal says why.
    ///
    /// - Returns: the names deleted and their sizes.
    ///
    /// - Parameter references: the entries' narinfos as read so far; pass one to the collections of many hosts,
    ///   whose caches link the same pool entries, so that each is read once.
    @discardableResult
    public func collect(keeping toplevels: [String], references: EntryReferences = EntryReferences()) -> CacheRemoval {
        var needed: Set<String> = []
        var queue = toplevels.compactMap(Nix.hashPart(ofStorePath:))
        while let hash = queue.popLast() {
            let name = CacheEntry.fileName(ofHashPart: hash)
            guard needed.insert(name).inserted else { continue }
            guard let below = references.of(entry: directory + "/" + name) else {
                var removal = CacheRemoval()
                removal.unreadable =
                    "\(directory)/\(name), which a served system needs, is missing or starts with no readable "
                    + "narinfo, so the closures the cache serves cannot be read whole: nothing was removed from it "
                    + "(`fleet gc --verify` finds and repairs damaged entries)"
                return removal
            }
            queue += below
        }
        var removal = CacheRemoval()
        for name in (try? FileIO.listDirectory(directory)) ?? [] where !needed.contains(name) {
            if (try? FileStatus.of(directory + "/" + name))?.kind == .directory {
                // `nar/`, and the `log/` and `realisations/` Nix makes: an older fleet's layout, one level deep.
                for file in (try? FileIO.listDirectory(directory + "/" + name)) ?? [] {
                    remove(name + "/" + file, into: &removal)
                }
                _ = try? FileIO.removeEmptyDirectory(directory + "/" + name)
            } else {
                remove(name, into: &removal)
            }
        }
        return removal
    }

    /// The narinfo an entry starts with: its first 2 KiB, and up to the longest narinfo only when it is longer.
    static func narinfo(ofEntry path: String) -> [UInt8]? {
        for length in [CacheEntry.firstHeadLength, CacheEntry.longestHeadLength] {
            guard let head = try? FileIO.readHeadNoFollow(path, length: length) else { return nil }
            if let split = CacheEntry.split(head: head) { return split.narinfo }
            if head.count < length { return nil }  // the whole file, and no narinfo in it
        }
        return nil
    }

    /// Whether the cache holds the entry of `storePath` (a regular file, not a link).
    public func hasEntry(of storePath: String) -> Bool {
        guard let hash = Nix.hashPart(ofStorePath: storePath) else { return false }
        return (try? FileStatus.of(directory + "/" + CacheEntry.fileName(ofHashPart: hash)))??.kind == .regular
    }

    /// The store paths whose entry the cache holds.
    public func storePathHashes() -> Set<String> {
        Set(((try? FileIO.listDirectory(directory)) ?? []).filter { Nix.isHashPart($0) })
    }

    private func remove(_ name: String, into removal: inout CacheRemoval) {
        let path = directory + "/" + name
        guard let status = try? FileStatus.of(path), status.kind != .directory else { return }
        if (try? FileIO.removeFile(path)) == true { removal.add(name, bytes: status.size) }
    }
}

/// The references of cache entries' narinfos, by the entry file's inode: hosts' caches link the pool's entries,
/// so a collection of many hosts (a publish, `fleet gc`) reads each shared entry once instead of once per host.
/// Keyed by inode, size and modification time, which a link does not change (its change time it does), and
/// which an entry, written once and never rewritten in place, keeps.
public final class EntryReferences {
    private struct Key: Hashable {
        let device: UInt64
        let inode: UInt64
        let size: Int64
        let seconds: Int64
        let nanoseconds: Int64
    }

    private var read: [Key: [String]?] = [:]

    public init() {}

    /// The hash parts the entry's narinfo refers to; nil when it is missing, not a regular file, or starts with
    /// no narinfo Nix would write (unreadable, or without a `References` line).
    func of(entry path: String) -> [String]? {
        guard let status = (try? FileStatus.of(path)) ?? nil, status.kind == .regular else { return nil }
        let key = Key(
            device: status.device, inode: status.inode, size: status.size, seconds: status.modificationSeconds,
            nanoseconds: status.modificationNanoseconds)
        if let known = read[key] { return known }
        let references = BinaryCache.narinfo(ofEntry: path).flatMap { try? NarInfo(parsing: $0, name: path) }
            .flatMap { $0.listsReferences ? $0.references : nil }
        read[key] = .some(references)
        return references
    }
}
