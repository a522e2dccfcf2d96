import FleetFiles
public import FleetProtocol
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
    /// path it is named after, signed by `fleetKey` over what it describes, the same bytes as the pool's
    /// `<hash>.narinfo` when that is there), then its NAR's size and SHA-256 against the narinfo's `FileSize`
    /// and `FileHash`. Nothing is changed. Bit rot, a disk error or an edit by hand is found here instead of by
    /// every host that fetches the entry.
    ///
    /// - Parameter progress: called after each entry with the number read and the number in all.
    public func verify(fleetKey: VerifyingKey, progress: (Int, Int) -> Void = { _, _ in }) -> PoolVerification {
        var result = PoolVerification()
        let names = (try? FileIO.listDirectory(entriesDirectory))?.filter(Nix.isHashPart).sorted() ?? []
        for (index, name) in names.enumerated() {
            switch check(name, fleetKey: fleetKey) {
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

    /// The entry names of `toplevel`'s closure as the pool's narinfos give it, and those of its paths whose pool
    /// narinfo cannot be read (what lies below them is unknown: only making the cache again, which copies the
    /// path anew, can tell).
    ///
    /// - Parameter references: the pool's narinfos as read so far; pass one to many calls, so that a path that
    ///   many hosts' closures share is read once.
    public func closureNames(of toplevel: String, references: PoolReferences) -> (
        names: Set<String>, unreadable: Set<String>
    ) {
        guard let root = Nix.hashPart(ofStorePath: toplevel) else { return ([], []) }
        var names: Set<String> = []
        var unreadable: Set<String> = []
        var queue = [root]
        while let hash = queue.popLast() {
            guard names.insert(hash).inserted else { continue }
            guard let below = references.of(hash) else {
                unreadable.insert(hash)
                continue
            }
            queue += below
        }
        return (names, unreadable)
    }

    /// Whether the pool holds `toplevel`'s whole closure: a readable narinfo and an entry for every path. Then
    /// ``link(closureOf:into:)`` alone makes a host's cache of it, without ``add(closureOf:signingKeyFile:)``'s
    /// `nix copy` (a repair shared by many hosts copies a path once, for the first).
    public func holdsClosure(of toplevel: String) -> Bool {
        guard let entries = try? closure(of: toplevel) else { return false }
        return entries.allSatisfy { hasEntry($0) && entryIsWhole($0) }
    }

    /// Where ``setAside(_:)`` keeps a damaged entry and its pool narinfo during a repair: in `entries/` (the same
    /// filesystem, so a rename), under names no publish writes (its temporaries are `.fleet-tmp-<pid>-<name>`).
    /// A repair killed midway leaves them: the pool's collection removes names with the temporary prefix, and the
    /// hosts' links to the damaged file are found by the next verification.
    public func asideNames(of damaged: DamagedEntry) -> (entry: String, narinfo: String) {
        let base = entriesDirectory + "/" + FileIO.temporaryPrefix + "damaged-" + damaged.name
        return (base, base + ".narinfo")
    }

    /// Moves a damaged entry and the pool's narinfo of its path out of the way (``asideNames(of:)``), so that the
    /// next ``add(closureOf:signingKeyFile:)`` copies the path again and makes a new entry. The hosts' links still
    /// name the damaged inode until they are linked to the new entry.
    ///
    /// - Throws: when the entry cannot be moved (nothing was changed then).
    public func setAside(_ damaged: DamagedEntry) throws(BinaryCache.Failure) {
        let aside = asideNames(of: damaged)
        do {
            try FileIO.rename(entriesDirectory + "/" + damaged.name, to: aside.entry)
        } catch {
            throw BinaryCache.Failure(description: "\(error)")
        }
        _ = try? FileIO.rename(directory + "/" + NarInfo.fileName(ofHashPart: damaged.name), to: aside.narinfo)
    }

    /// Ends a repair: when the pool has the entry again (made anew), what was set aside goes; otherwise the
    /// damaged entry and its narinfo are put back, so that the damage stays where the next verification finds it
    /// (and a publish reads the same narinfo as before).
    ///
    /// - Returns: whether the entry was made anew.
    @discardableResult
    public func settle(_ damaged: DamagedEntry) -> Bool {
        let aside = asideNames(of: damaged)
        let entry = entriesDirectory + "/" + damaged.name
        let narinfo = directory + "/" + NarInfo.fileName(ofHashPart: damaged.name)
        if (try? FileStatus.of(entry))?.kind == .regular {
            _ = try? FileIO.removeFile(aside.entry)
            _ = try? FileIO.removeFile(aside.narinfo)
            return true
        }
        _ = try? FileIO.rename(aside.entry, to: entry)
        if (try? FileStatus.of(narinfo)) ?? nil == nil { _ = try? FileIO.rename(aside.narinfo, to: narinfo) }
        _ = try? FileIO.removeFile(aside.narinfo)
        return false
    }

    /// Removes a damaged entry that no served system of a host in fleet.toml needs: the entry and the pool's
    /// narinfo.
    ///
    /// - Returns: whether the entry is gone.
    public func remove(_ damaged: DamagedEntry) -> Bool {
        _ = try? FileIO.removeFile(directory + "/" + NarInfo.fileName(ofHashPart: damaged.name))
        return (try? FileIO.removeFile(entriesDirectory + "/" + damaged.name)) != nil
    }

    private enum EntryCheck {
        case whole(size: Int64)
        case damaged(storePath: String?, reason: String, size: Int64)
        case gone
    }

    /// One entry, read once from start to end: the head until its empty line, then the NAR through SHA-256.
    private func check(_ name: String, fleetKey: VerifyingKey) -> EntryCheck {
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
        guard let fingerprint = info.fingerprint else {
            return damaged("its narinfo lacks a StorePath, NarHash or NarSize line")
        }
        let signatures = String(decoding: narinfo, as: UTF8.self).split(separator: "\n").filter {
            $0.hasPrefix("Sig: ")
        }
        guard
            signatures.contains(where: {
                (try? fleetKey.verify(signature: String($0.dropFirst("Sig: ".count)), of: Array(fingerprint.utf8)))
                    != nil
            })
        else {
            return damaged(
                "its narinfo carries no signature of the fleet key \(fleetKey.name) over what it describes "
                    + "(its path, NarHash, NarSize and references): hosts would refuse it")
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

/// The references the pool's narinfos give, each file read once however many closures walk it: a fleet's hosts
/// share most of their closures, and a verification walks every host's. For one verification at a time (the
/// pool changes under the publish lock only).
public final class PoolReferences {
    private let pool: CachePool
    private var read: [String: [String]?] = [:]

    public init(_ pool: CachePool) { self.pool = pool }

    /// The hash parts `hash`'s narinfo refers to; nil when the pool has no readable narinfo of it.
    func of(_ hash: String) -> [String]? {
        if let known = read[hash] { return known }
        let path = pool.directory + "/" + NarInfo.fileName(ofHashPart: hash)
        let references = (try? FileIO.readNoFollow(path, limit: CachePool.narInfoLimit))
            .flatMap { try? NarInfo(parsing: $0, name: path) }.map(\.references)
        read[hash] = .some(references)
        return references
    }
}
