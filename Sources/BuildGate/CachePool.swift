import CommandRunner
import FleetFiles
import FleetProtocol
import Foundation
import Glibc
import NixKit
import ServerStore

/// The server's one binary cache, `<chroot_root>/.cache-pool/` (root:root 0700): every store path is copied here
/// once, by `nix copy` (its narinfo and NAR, Nix's layout), and made into one file, ``CacheEntry``
/// (`entries/<hash>`: the narinfo, an empty line, the NAR), whichever hosts need it; the NAR file then goes and
/// the narinfo stays, so that the next `nix copy` skips the path. A host's `cache/` holds hard links to the
/// entries of exactly its closures (``link(closureOf:into:)``), so fifty hosts sharing a closure store and
/// compress it once, each host still sees only its own paths in its chroot, and each path costs a host one name.
///
/// An entry that no host's cache links any more (link count 1) is garbage (``collect()``), and its narinfo with
/// it. Everything that adds, links or collects runs under the publish lock, so an entry is never collected
/// between its making and its link into a host's cache.
public struct CachePool: Sendable {
    public let directory: String

    public init(chrootRoot: String) {
        self.directory = ChrootLayout.cachePool(root: chrootRoot)
    }

    public init(directory: String) {
        self.directory = directory
    }

    /// Where the entries are.
    public var entriesDirectory: String { directory + "/entries" }

    /// Creates the pool (root:root 0700) if it is missing, and puts its owner and mode right if not.
    public func ensure() throws(BinaryCache.Failure) {
        do {
            try FileIO.ensureDirectory(directory, mode: ChrootLayout.cachePoolMode, owner: 0, group: 0)
            try FileIO.ensureDirectory(entriesDirectory, mode: 0o700, owner: 0, group: 0)
        } catch {
            throw BinaryCache.Failure(description: "cannot make the binary-cache pool \(directory): \(error)")
        }
    }

    /// Copies `toplevel`'s closure into the pool, signed with the key file (the fleet's `signing.key`, Nix
    /// format), and makes the entry of every path that has none yet, durable at once (one `syncfs`). Nix skips
    /// every path whose narinfo the pool already has, so a closure shared by many hosts is compressed once. An
    /// entry of another size than its narinfo and NAR make (cut by a crash) is removed; a narinfo whose entry is
    /// missing and whose NAR is missing too (that, an interrupted collection, a pool damaged by hand) is removed
    /// and its path copied again.
    public func add(closureOf toplevel: String, signingKeyFile: String) async throws(BinaryCache.Failure) {
        try ensure()
        try await copy(toplevel, signingKeyFile: signingKeyFile)
        var entries = try closure(of: toplevel)
        for entry in entries where hasEntry(entry) && !entryIsWhole(entry) {
            // Hosts that link it keep the cut inode until their next publish links the new one.
            _ = try? FileIO.removeFile(entryPath(entry))
        }
        let unrecoverable = entries.filter { !hasEntry($0) && !hasNar($0) }
        if !unrecoverable.isEmpty {
            for entry in unrecoverable { _ = try? FileIO.removeFile(directory + "/" + entry.narinfo) }
            try await copy(toplevel, signingKeyFile: signingKeyFile)
            entries = try closure(of: toplevel)
            if let entry = entries.first(where: { !hasEntry($0) && !hasNar($0) }) {
                throw BinaryCache.Failure(
                    description: "the binary-cache pool has \(directory)/\(entry.narinfo) but neither its entry "
                        + "\(entryPath(entry)) nor its NAR \(narPath(entry.nar)), even after copying \(toplevel) again; "
                        + "remove \(directory) and publish again")
            }
        }
        let new = entries.filter { !hasEntry($0) }
        guard !new.isEmpty else { return }
        try keepOnlyFleetSignatures(of: new, signingKeyFile: signingKeyFile)
        for entry in new { try makeEntry(entry) }
        // The NAR files go only once every entry holding them is on disk: two paths of identical contents share
        // one NAR file (Nix names it by its hash), and a crash must not leave an entry cut with its NAR gone.
        do {
            try FileIO.syncFileSystem(containing: entriesDirectory)
            try FileIO.syncDirectory(of: entryPath(new[0]))
        } catch {
            throw BinaryCache.Failure(description: "cannot make the entries in \(entriesDirectory) durable: \(error)")
        }
        for nar in Set(new.map(\.nar)) { _ = try? FileIO.removeFile(narPath(nar)) }
    }

    /// Reduces the signatures of `entries`' narinfo files (those whose entry is not made yet) to the fleet
    /// key's (``NarInfoSignatures``). `nix copy` writes every signature the server's store holds.
    func keepOnlyFleetSignatures(of entries: [Entry], signingKeyFile: String) throws(BinaryCache.Failure) {
        let key: VerifyingKey
        do {
            let text = String(decoding: try FileIO.readNoFollow(signingKeyFile, limit: 64 << 10), as: UTF8.self)
            key = try SigningKey(nixFormat: text).publicKey
        } catch {
            throw BinaryCache.Failure(description: "cannot read the fleet's signing key \(signingKeyFile): \(error)")
        }
        for entry in entries {
            let path = directory + "/" + entry.narinfo
            do {
                let text = String(decoding: try FileIO.readNoFollow(path, limit: Self.narInfoLimit), as: UTF8.self)
                guard let reduced = try NarInfoSignatures.keepingOnly(key, in: text, name: path) else { continue }
                try FileIO.writeAtomically(Array(reduced.utf8), to: path, mode: 0o644, owner: 0, group: 0)
            } catch let error as BinaryCache.Failure {
                throw error
            } catch {
                throw BinaryCache.Failure(description: "cannot rewrite the signatures of \(path): \(error)")
            }
        }
    }

    /// Writes `entry`'s file (its narinfo, the empty line, its NAR: root 0644, the inode hosts read through
    /// their links), not yet durable, and checks it: the narinfo is one a host accepts, the NAR file as long as
    /// its `FileSize`. The NAR file stays until every new entry is durable (``add(closureOf:signingKeyFile:)``).
    func makeEntry(_ entry: Entry) throws(BinaryCache.Failure) {
        let narinfoPath = directory + "/" + entry.narinfo
        let target = entryPath(entry)
        do {
            let narinfo = try FileIO.readNoFollow(narinfoPath, limit: Self.narInfoLimit)
            let info = try NarInfo(parsing: narinfo, name: narinfoPath)
            let copied = try FileIO.writeConcatenation(
                header: CacheEntry.header(narinfo: narinfo), thenContentsOf: narPath(entry.nar), to: target,
                mode: 0o644, owner: 0, group: 0)
            guard info.fileSize == copied else {
                _ = try? FileIO.removeFile(target)
                throw BinaryCache.Failure(
                    description: "the binary-cache pool's NAR \(narPath(entry.nar)) is \(copied) bytes, not the "
                        + "FileSize of \(narinfoPath) (\(info.fileSize.map(String.init) ?? "none")); remove both and "
                        + "publish again")
            }
        } catch let error as BinaryCache.Failure {
            throw error
        } catch {
            throw BinaryCache.Failure(
                description: "cannot make the binary-cache pool's entry \(target) of \(narinfoPath): \(error)")
        }
    }

    /// Makes `cache` hold `toplevel`'s closure as hard links to the pool's entries. A file already there that is
    /// not the pool's inode (damaged, or left by hand) is replaced by the link atomically: link to a temporary
    /// name, then rename over it. Links cannot cross filesystems, and nothing is ever copied instead: a link
    /// that fails fails the host's cache, naming both paths.
    ///
    /// - Returns: how many files were linked now (the others already were).
    @discardableResult
    public func link(closureOf toplevel: String, into cache: BinaryCache) throws(BinaryCache.Failure) -> Int {
        let entries = try closure(of: toplevel)
        do {
            try FileIO.ensureDirectory(cache.directory, mode: 0o755, owner: 0, group: 0)
        } catch {
            throw BinaryCache.Failure(description: "cannot prepare the binary cache \(cache.directory): \(error)")
        }
        var linked = 0
        for entry in entries {
            if try linkFile(entryPath(entry), as: cache.directory + "/" + entry.name) { linked += 1 }
        }
        do {
            if linked > 0 { try FileIO.syncDirectory(of: cache.directory + "/" + entries[0].name) }
        } catch {
            throw BinaryCache.Failure(description: "cannot make the links in \(cache.directory) durable: \(error)")
        }
        return linked
    }

    /// Removes the entries that no host's cache links (link count 1) and the temporary files of interrupted
    /// entries, then the narinfo files without an entry (so `nix copy` copies the path again when it is next
    /// needed), then the NAR files no host links (every NAR is in its entry once made; one a host's cache of an
    /// older fleet still links stays until that host's collection). Names in `entries/` and `nar/` are removed
    /// only when these are directories, not links. Run under the publish lock only.
    @discardableResult
    public func collect() -> CacheRemoval {
        var removal = CacheRemoval()
        guard (try? FileStatus.of(directory))?.kind == .directory else { return removal }
        var entries: Set<String> = []
        for name in listDirectoryNoFollow(entriesDirectory) {
            let path = entriesDirectory + "/" + name
            guard let status = try? FileStatus.of(path), status.kind == .regular else { continue }
            guard status.linkCount == 1 || name.hasPrefix(FileIO.temporaryPrefix) else {
                entries.insert(name)
                continue
            }
            if (try? FileIO.removeFile(path)) == true {
                removal.add("entries/" + name, bytes: status.size)
            } else {
                entries.insert(name)
            }
        }
        for name in (try? FileIO.listDirectory(directory)) ?? [] where name.hasSuffix(".narinfo") {
            let path = directory + "/" + name
            guard let status = try? FileStatus.of(path), status.kind == .regular,
                !entries.contains(CacheEntry.fileName(ofHashPart: String(name.dropLast(".narinfo".count))))
            else { continue }
            if (try? FileIO.removeFile(path)) == true { removal.add(name, bytes: status.size) }
        }
        for name in listDirectoryNoFollow(directory + "/nar") {
            let path = directory + "/nar/" + name
            guard let status = try? FileStatus.of(path), status.kind == .regular, status.linkCount == 1 else {
                continue
            }
            if (try? FileIO.removeFile(path)) == true { removal.add("nar/" + name, bytes: status.size) }
        }
        return removal
    }

    /// The names in `path` when it is a directory itself (not a link to one); none otherwise.
    private func listDirectoryNoFollow(_ path: String) -> [String] {
        guard (try? FileStatus.of(path))?.kind == .directory else { return [] }
        return (try? FileIO.listDirectory(path)) ?? []
    }

    /// The store paths whose entry the pool holds.
    public func storePathHashes() -> Set<String> {
        Set(((try? FileIO.listDirectory(entriesDirectory)) ?? []).filter { Nix.isHashPart($0) })
    }

    /// One store path of a closure: its hash part, its narinfo's name and its NAR's name in `nar/`.
    struct Entry: Hashable {
        let hash: String
        let nar: String
        /// The pool narinfo's length and `FileSize` (nil when not given): an entry is that, one byte, and the NAR.
        let narinfoLength: Int64
        let fileSize: Int64?
        var narinfo: String { NarInfo.fileName(ofHashPart: hash) }
        /// The entry's name, in `entries/` and in a host's cache.
        var name: String { CacheEntry.fileName(ofHashPart: hash) }
    }

    /// `toplevel`'s closure as the pool's narinfo files say it (their `References`); each entry already made is
    /// made root-owned and 0644 (the inode a host reads through its link; the pool directory itself is 0700).
    func closure(of toplevel: String) throws(BinaryCache.Failure) -> [Entry] {
        guard let root = Nix.hashPart(ofStorePath: toplevel) else {
            throw BinaryCache.Failure(description: "\(toplevel) is not a store path")
        }
        var seen: Set<String> = []
        var entries: [Entry] = []
        var queue = [root]
        while let hash = queue.popLast() {
            guard seen.insert(hash).inserted else { continue }
            let path = directory + "/" + NarInfo.fileName(ofHashPart: hash)
            let info: NarInfo
            let bytes: [UInt8]
            do {
                bytes = try FileIO.readNoFollow(path, limit: Self.narInfoLimit)
                info = try NarInfo(parsing: bytes, name: path)
            } catch {
                throw BinaryCache.Failure(
                    description: "the binary-cache pool lacks a readable \(path), which the closure of \(toplevel) "
                        + "needs (\(error)); remove it and publish again")
            }
            entries.append(
                Entry(hash: hash, nar: info.narFile, narinfoLength: Int64(bytes.count), fileSize: info.fileSize))
            queue += info.references
        }
        for entry in entries where hasEntry(entry) { try normalize(entryPath(entry)) }
        return entries
    }

    func narPath(_ name: String) -> String { directory + "/nar/" + name }
    func entryPath(_ entry: Entry) -> String { entriesDirectory + "/" + entry.name }
    func hasEntry(_ entry: Entry) -> Bool { (try? FileStatus.of(entryPath(entry)))?.kind == .regular }
    func hasNar(_ entry: Entry) -> Bool { (try? FileStatus.of(narPath(entry.nar)))?.kind == .regular }
    /// Whether the entry is as long as its narinfo, the empty line and its NAR (`FileSize`) make.
    func entryIsWhole(_ entry: Entry) -> Bool {
        guard let status = try? FileStatus.of(entryPath(entry)), status.kind == .regular,
            status.size > entry.narinfoLength
        else { return false }
        return entry.fileSize.map { $0 == status.size - entry.narinfoLength - 1 } ?? true
    }

    func copy(_ toplevel: String, signingKeyFile: String) async throws(BinaryCache.Failure) {
        let destination = "file://\(directory)?secret-key=\(signingKeyFile)&compression=zstd"
        do {
            try await Command.checked("nix", Nix.flakeFlags + ["copy", "--to", destination, toplevel])
        } catch {
            throw BinaryCache.Failure(
                description: "cannot copy \(toplevel) into the binary-cache pool \(directory): \(error)")
        }
    }

    /// Root-owned and world-readable: the host reads the same inode through its link, over SFTP (public data,
    /// signed). Only changed when it differs, so a file already right keeps its times.
    func normalize(_ path: String) throws(BinaryCache.Failure) {
        do {
            guard let status = try FileStatus.of(path), status.kind == .regular else {
                throw FileSystemError("lstat", path: path, errno: EINVAL, detail: "is not a regular file")
            }
            if status.owner != 0 || status.group != 0 { try FileIO.setOwner(path, owner: 0, group: 0) }
            if status.permissions != 0o644 { try FileIO.setMode(path, 0o644) }
        } catch {
            throw BinaryCache.Failure(description: "the binary-cache pool's \(path) is unusable: \(error)")
        }
    }

    /// Links `poolFile` as `destination` unless that already is the pool's inode; true when it linked.
    func linkFile(_ poolFile: String, as destination: String) throws(BinaryCache.Failure) -> Bool {
        let temporary = FileIO.temporaryPath(for: destination)
        do throws(FileSystemError) {
            guard let source = try FileStatus.of(poolFile), source.kind == .regular else {
                throw FileSystemError("lstat", path: poolFile, errno: ENOENT, detail: "is not in the pool")
            }
            if let present = try FileStatus.of(destination), present.device == source.device,
                present.inode == source.inode
            {
                return false
            }
            _ = try FileIO.removeFile(temporary)
            try FileIO.hardLink(poolFile, at: temporary)
            try FileIO.rename(temporary, to: destination)
            return true
        } catch {
            _ = try? FileIO.removeFile(temporary)
            var reason = "cannot hard-link the pool's \(poolFile) as \(destination): \(error)"
            if error.errno == EXDEV {
                reason +=
                    " (the pool \(directory) and the chroot are on different filesystems; put the chroot on the "
                    + "chroot root's filesystem, `fleet setup` checks it)"
            }
            throw BinaryCache.Failure(description: reason)
        }
    }

    static let narInfoLimit = CacheEntry.narinfoLimit
}

/// What a collection removed from one cache (a host's links, or the pool's files).
public struct CacheRemoval: Codable, Sendable, Equatable {
    /// Names relative to the cache: a host's `<hash>` (and what an older fleet left: `<hash>.narinfo`,
    /// `nar/<file>`…), the pool's `entries/<hash>`, `<hash>.narinfo`, `nar/<file>`.
    public var names: [String] = []
    /// The sizes of the files removed. For a host's links, the disk space comes back only when the pool's
    /// copy goes too.
    public var bytes: Int64 = 0
    /// Why nothing was removed although something may be garbage (a host's cache whose closures cannot be read
    /// whole); nil when the collection ran.
    public var unreadable: String?

    public init() {}

    public var files: Int { names.count }

    mutating func add(_ name: String, bytes size: Int64) {
        names.append(name)
        bytes += size
    }

    enum CodingKeys: String, CodingKey { case names, bytes, files, unreadable }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        names = try container.decode([String].self, forKey: .names)
        bytes = try container.decode(Int64.self, forKey: .bytes)
        unreadable = try container.decodeIfPresent(String.self, forKey: .unreadable)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(names, forKey: .names)
        try container.encode(bytes, forKey: .bytes)
        try container.encode(files, forKey: .files)
        try container.encodeIfPresent(unreadable, forKey: .unreadable)
    }
}
