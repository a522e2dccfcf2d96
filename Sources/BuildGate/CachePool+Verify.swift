import FleetFiles
import FleetProtocol
import Glibc
import NixKit

/// An entry of the pool whose bytes are not what its narinfo says: every host that needs it would fail on it
/// (Nix refuses a NAR of the wrong hash), so it is found by ``CachePool/verify(progress:)`` and made again.
public struct DamagedEntry: Codable, Sendable, Equatable {
    /// The entry's name in `entries/` and in the hosts' caches: its store path's hash part.
    public var name: String
    /// The store path its narinfo names, when the narinfo can be read.
    public var storePath: String?
    public var reason: String
}

/// What ``CachePool/verify(progress:)`` read and found.
public struct PoolVerification: Codable, Sendable, Equatable {
    public var entries = 0
    public var bytes: Int64 = 0
    public var damaged: [DamagedEntry] = []
}

extension CachePool {
    /// Reads every entry in full and checks it as a host would before Nix does: its narinfo (the one of the store
    /// path it is named after, the same bytes as the pool's `<hash>.narinfo`), then its NAR's size and SHA-256
    /// against the narinfo's `FileSize` and `FileHash`. Nothing is changed. Bit rot, a disk error or an edit by
    /// hand is found here instead of by every host that fetches the entry.
    ///
    /// - Parameter progress: called after each entry with the number read and the number in all.
    public func verify(progress: (Int, Int) -> Void = { _, _ in }) -> PoolVerification {
        var result = PoolVerification()
        let names = (try? FileIO.listDirectory(entriesDirectory))?.filter(Nix.isHashPart).sorted() ?? []
        for (index, name) in names.enumerated() {
            switch check(name) {
            case .whole(let size):
                result.bytes += size
            case .damaged(let storePath, let reason, let size):
                result.bytes += size
                result.damaged.append(DamagedEntry(name: name, storePath: storePath, reason: reason))
            case .gone:
                break
            }
            result.entries += 1
            progress(index + 1, names.count)
        }
        return result
    }

    /// The caches among `caches` that link `damaged`'s entry: a file of that name and the entry's inode.
    public func caches(linking damaged: DamagedEntry, among caches: [BinaryCache]) -> [BinaryCache] {
        guard let entry = try? FileStatus.of(entriesDirectory + "/" + damaged.name), entry.kind == .regular else {
            return []
        }
        return caches.filter { cache in
            guard let file = try? FileStatus.of(cache.directory + "/" + damaged.name) else { return false }
            return file.device == entry.device && file.inode == entry.inode
        }
    }

    /// The names in `cache` that are not links to the pool's entries: a file of another inode (a copy, a damaged
    /// entry that a repair replaced in the pool but could not link here), or one the pool has no entry of. Only
    /// store-path names count: what an older fleet left goes at the host's collection.
    public func strays(in cache: BinaryCache) -> [String] {
        guard (try? FileStatus.of(cache.directory))?.kind == .directory else { return [] }
        let names = (try? FileIO.listDirectory(cache.directory))?.filter(Nix.isHashPart).sorted() ?? []
        return names.filter { name in
            guard let file = try? FileStatus.of(cache.directory + "/" + name),
                let entry = try? FileStatus.of(entriesDirectory + "/" + name), entry.kind == .regular
            else { return true }
            return file.device != entry.device || file.inode != entry.inode
        }
    }

    /// Moves a damaged entry out of the way so that the next ``add(closureOf:signingKeyFile:)`` makes it again:
    /// the entry to a temporary name in `entries/`, and the pool's narinfo goes (so `nix copy` copies the path
    /// again). The hosts' links still name the damaged inode until they are linked to the new entry.
    ///
    /// - Returns: the temporary name, for ``settle(_:setAsideAt:)``; nil when the entry is not there.
    public func setAside(_ damaged: DamagedEntry) -> String? {
        let entry = entriesDirectory + "/" + damaged.name
        let aside = FileIO.temporaryPath(for: entry)
        do {
            try FileIO.rename(entry, to: aside)
        } catch {
            return nil
        }
        _ = try? FileIO.removeFile(directory + "/" + NarInfo.fileName(ofHashPart: damaged.name))
        return aside
    }

    /// Ends a repair: when the pool has the entry again (made anew), the damaged file goes; otherwise it is put
    /// back (with the pool's narinfo gone, the next publish or verification copies the path again), so that the
    /// damage stays where the next verification finds it.
    ///
    /// - Returns: whether the entry was made anew.
    @discardableResult
    public func settle(_ damaged: DamagedEntry, setAsideAt aside: String) -> Bool {
        let entry = entriesDirectory + "/" + damaged.name
        if (try? FileStatus.of(entry))?.kind == .regular {
            _ = try? FileIO.removeFile(aside)
            return true
        }
        _ = try? FileIO.rename(aside, to: entry)
        return false
    }

    /// Removes a damaged entry that no host in fleet.toml links: the entry and the pool's narinfo.
    public func remove(_ damaged: DamagedEntry) {
        _ = try? FileIO.removeFile(entriesDirectory + "/" + damaged.name)
        _ = try? FileIO.removeFile(directory + "/" + NarInfo.fileName(ofHashPart: damaged.name))
    }

    private enum EntryCheck {
        case whole(size: Int64)
        case damaged(storePath: String?, reason: String, size: Int64)
        case gone
    }

    /// One entry, read once from start to end: the head until its empty line, then the NAR through SHA-256.
    private func check(_ name: String) -> EntryCheck {
        let path = entriesDirectory + "/" + name
        let read: (size: Int64, head: [UInt8], narOffset: Int?, narBytes: Int64, digest: [UInt8])
        do {
            read = try FileIO.withRegularFileNoFollow(path) { descriptor, status throws(FileSystemError) in
                var head: [UInt8] = []
                var narOffset: Int?
                var hasher = SHA256Hasher()
                var narBytes: Int64 = 0
                try FileIO.forEachChunk(of: descriptor, path: path, chunkSize: 256 << 10) { chunk in
                    if narOffset != nil {
                        hasher.update(chunk)
                        narBytes += Int64(chunk.count)
                        return
                    }
                    let before = head.count
                    guard before < CacheEntry.longestHeadLength else { return }
                    head.append(contentsOf: chunk.prefix(CacheEntry.longestHeadLength - before))
                    guard let split = CacheEntry.split(head: head) else { return }
                    narOffset = split.narOffset
                    let rest = UnsafeRawBufferPointer(rebasing: chunk[(split.narOffset - before)...])
                    hasher.update(rest)
                    narBytes += Int64(rest.count)
                }
                return (status.size, head, narOffset, narBytes, hasher.finalize())
            }
        } catch {
            if error.errno == ENOENT { return .gone }
            return .damaged(storePath: nil, reason: "cannot be read: \(error)", size: 0)
        }
        let (size, head, narBytes) = (read.size, read.head, read.narBytes)
        guard let narOffset = read.narOffset else {
            return .damaged(
                storePath: nil,
                reason: "does not start with a narinfo of at most \(ByteCount.exact(Int64(CacheEntry.narinfoLimit))) "
                    + "and an empty line", size: size)
        }
        let narinfo = Array(head[..<(narOffset - 1)])
        let info: NarInfo
        do {
            info = try NarInfo(parsing: narinfo, name: path)
        } catch {
            return .damaged(storePath: nil, reason: "its narinfo cannot be read: \(error)", size: size)
        }
        let storePath = info.storePath
        func damaged(_ reason: String) -> EntryCheck { .damaged(storePath: storePath, reason: reason, size: size) }
        guard let storePath, Nix.hashPart(ofStorePath: storePath) == name else {
            return damaged("its narinfo is of \(info.storePath ?? "no store path"), not of a path named \(name)")
        }
        let poolNarinfo = directory + "/" + NarInfo.fileName(ofHashPart: name)
        if let own = try? FileIO.readNoFollow(poolNarinfo, limit: CacheEntry.narinfoLimit), own != narinfo {
            return damaged("its narinfo differs from the pool's \(poolNarinfo)")
        }
        guard let fileSize = info.fileSize, let fileHash = info.fileSHA256 else {
            return damaged("its narinfo gives no FileSize and sha256 FileHash to check its NAR against")
        }
        guard narBytes == fileSize else {
            return damaged("its NAR is \(narBytes) bytes where its narinfo's FileSize says \(fileSize) (cut or grown)")
        }
        let digest = NixBase32.encode(read.digest)
        guard digest == fileHash else {
            return damaged(
                "its NAR's SHA-256 is sha256:\(digest) where its narinfo's FileHash says sha256:\(fileHash) "
                    + "(same size, other bytes: a disk error or an edit)")
        }
        return .whole(size: size)
    }
}
