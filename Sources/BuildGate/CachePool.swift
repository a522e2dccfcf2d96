import CommandRunner
import FleetFiles
import FleetProtocol
import Foundation
import Glibc
import NixKit
import ServerStore

/// The server's one binary cache, `<chroot_root>/.cache-pool/` (root:root 0700): every store path's NAR and
/// narinfo are written here once, by `nix copy`, whichever hosts need them. A host's `cache/` holds hard links
/// to the pool's files of exactly its closures (``link(closureOf:into:)``), so fifty hosts sharing a closure
/// store and compress it once, and each host still sees only its own paths in its chroot.
///
/// A pool file that no host's cache links any more (link count 1) is garbage (``collect()``). Everything that
/// adds, links or collects runs under the publish lock, so a file is never collected between its copy into
/// the pool and its link into a host's cache.
public struct CachePool: Sendable {
    public let directory: String

    public init(chrootRoot: String) {
        self.directory = ChrootLayout.cachePool(root: chrootRoot)
    }

    public init(directory: String) {
        self.directory = directory
    }

    /// Creates the pool (root:root 0700) if it is missing, and puts its owner and mode right if not.
    public func ensure() throws(BinaryCache.Failure) {
        do {
            try FileIO.ensureDirectory(directory, mode: ChrootLayout.cachePoolMode, owner: 0, group: 0)
        } catch {
            throw BinaryCache.Failure(description: "cannot make the binary-cache pool \(directory): \(error)")
        }
    }

    /// Copies `toplevel`'s closure into the pool, signed with the key file (the fleet's `signing.key`, Nix
    /// format). Nix skips every path whose narinfo the pool already has, so a closure shared by many hosts is
    /// compressed once. A narinfo whose NAR is missing (a pool damaged by hand) is removed and copied again.
    public func add(closureOf toplevel: String, signingKeyFile: String) async throws(BinaryCache.Failure) {
        try ensure()
        try await copy(toplevel, signingKeyFile: signingKeyFile)
        let entries = try closure(of: toplevel)
        try keepOnlyFleetSignatures(of: entries, signingKeyFile: signingKeyFile)
        let missing = entries.filter { entry in
            (try? FileStatus.of(narPath(entry.nar)))?.kind != .regular
        }
        guard !missing.isEmpty else { return }
        for entry in missing { _ = try? FileIO.removeFile(directory + "/" + entry.narinfo) }
        try await copy(toplevel, signingKeyFile: signingKeyFile)
        if let entry = try closure(of: toplevel).first(where: {
            (try? FileStatus.of(narPath($0.nar)))?.kind != .regular
        }) {
            throw BinaryCache.Failure(
                description: "the binary-cache pool has \(directory)/\(entry.narinfo) but not its NAR "
                    + "\(narPath(entry.nar)), even after copying \(toplevel) again; remove \(directory) and publish again"
            )
        }
    }

    /// Reduces the signatures of the closure's narinfo files that no host links yet (those `nix copy` has just
    /// written) to the fleet key's (``NarInfoSignatures``). A narinfo already linked is left as it is: a new inode
    /// would be collected before the hosts that read the old one were linked to it.
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
                guard let status = try FileStatus.of(path), status.kind == .regular, status.linkCount == 1 else {
                    continue
                }
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

    /// Makes `cache` hold `toplevel`'s closure as hard links to the pool's files (NAR before narinfo, so a host
    /// never finds a narinfo whose NAR is not there yet), plus its own `nix-cache-info`. A file already there
    /// that is not the pool's inode (written by an older fleet, or damaged) is replaced by the link atomically:
    /// link to a temporary name, then rename over it. Links cannot cross filesystems, and nothing is ever
    /// copied instead: a link that fails fails the host's cache, naming both paths.
    ///
    /// - Returns: how many files were linked now (the others already were).
    @discardableResult
    public func link(closureOf toplevel: String, into cache: BinaryCache) throws(BinaryCache.Failure) -> Int {
        let entries = try closure(of: toplevel)
        let nars = cache.directory + "/nar"
        do {
            try FileIO.ensureDirectory(cache.directory, mode: 0o755, owner: 0, group: 0)
            try FileIO.ensureDirectory(nars, mode: 0o755, owner: 0, group: 0)
            let info = try FileIO.readNoFollow(directory + "/" + Self.cacheInfoName, limit: 64 << 10)
            let ownInfo = cache.directory + "/" + Self.cacheInfoName
            let present = try FileStatus.of(ownInfo)
            if present == nil || present?.linkCount != 1 || (try? FileIO.readNoFollow(ownInfo, limit: 64 << 10)) != info
            {
                try FileIO.writeAtomically(info, to: ownInfo, mode: 0o644, owner: 0, group: 0)
            }
        } catch {
            throw BinaryCache.Failure(description: "cannot prepare the binary cache \(cache.directory): \(error)")
        }
        var linked = 0
        for entry in entries {
            if try linkFile(narPath(entry.nar), as: nars + "/" + entry.nar) { linked += 1 }
            if try linkFile(directory + "/" + entry.narinfo, as: cache.directory + "/" + entry.narinfo) { linked += 1 }
        }
        do {
            if linked > 0 {
                try FileIO.syncDirectory(of: nars + "/" + Self.cacheInfoName)
                try FileIO.syncDirectory(of: cache.directory + "/" + Self.cacheInfoName)
            }
        } catch {
            throw BinaryCache.Failure(description: "cannot make the links in \(cache.directory) durable: \(error)")
        }
        return linked
    }

    /// Removes the pool's files that no host's cache links (link count 1): narinfo files first, then the NARs
    /// that no remaining narinfo names, so that an interruption never leaves a narinfo without its NAR (Nix
    /// would skip that path forever). Run under the publish lock only.
    @discardableResult
    public func collect() -> CacheRemoval {
        var removal = CacheRemoval()
        guard (try? FileStatus.of(directory))?.kind == .directory else { return removal }
        var namedNars: Set<String> = []
        for name in (try? FileIO.listDirectory(directory)) ?? [] where name.hasSuffix(".narinfo") {
            let path = directory + "/" + name
            guard let status = try? FileStatus.of(path), status.kind == .regular else { continue }
            if status.linkCount == 1 {
                if (try? FileIO.removeFile(path)) == true { removal.add(name, bytes: status.size) }
            } else if let bytes = try? FileIO.readNoFollow(path, limit: Self.narInfoLimit),
                let info = try? NarInfo(parsing: bytes, name: name)
            {
                namedNars.insert(info.narFile)
            }
        }
        for name in (try? FileIO.listDirectory(directory + "/nar")) ?? [] where !namedNars.contains(name) {
            let path = directory + "/nar/" + name
            guard let status = try? FileStatus.of(path), status.kind == .regular, status.linkCount == 1 else {
                continue
            }
            if (try? FileIO.removeFile(path)) == true { removal.add("nar/" + name, bytes: status.size) }
        }
        return removal
    }

    /// One store path of a closure: its narinfo's name and its NAR's name in `nar/`.
    struct Entry: Hashable {
        let narinfo: String
        let nar: String
    }

    /// `toplevel`'s closure as the pool's narinfo files say it (their `References`), each file made root-owned
    /// and 0644 (the inode a host reads through its link; the pool directory itself is 0700).
    func closure(of toplevel: String) throws(BinaryCache.Failure) -> [Entry] {
        guard let root = Nix.hashPart(ofStorePath: toplevel) else {
            throw BinaryCache.Failure(description: "\(toplevel) is not a store path")
        }
        var seen: Set<String> = []
        var entries: [Entry] = []
        var queue = [root]
        while let hash = queue.popLast() {
            let name = NarInfo.fileName(ofHashPart: hash)
            guard seen.insert(name).inserted else { continue }
            let path = directory + "/" + name
            let info: NarInfo
            do {
                info = try NarInfo(parsing: try FileIO.readNoFollow(path, limit: Self.narInfoLimit), name: path)
            } catch {
                throw BinaryCache.Failure(
                    description: "the binary-cache pool lacks a readable \(path), which the closure of \(toplevel) "
                        + "needs (\(error)); remove it and publish again")
            }
            entries.append(Entry(narinfo: name, nar: info.narFile))
            queue += info.references
        }
        for entry in entries {
            try normalize(directory + "/" + entry.narinfo)
            if (try? FileStatus.of(narPath(entry.nar)))?.kind == .regular { try normalize(narPath(entry.nar)) }
        }
        return entries
    }

    func narPath(_ name: String) -> String { directory + "/nar/" + name }

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

    static let cacheInfoName = "nix-cache-info"
    static let narInfoLimit = 64 << 10
}

/// What a collection removed from one cache (a host's links, or the pool's files).
public struct CacheRemoval: Codable, Sendable, Equatable {
    /// Names relative to the cache: `<hash>.narinfo`, `nar/<file>`.
    public var names: [String] = []
    /// The sizes of the files removed. For a host's links, the disk space comes back only when the pool's
    /// copy goes too.
    public var bytes: Int64 = 0

    public init() {}

    public var files: Int { names.count }

    mutating func add(_ name: String, bytes size: Int64) {
        names.append(name)
        bytes += size
    }

    enum CodingKeys: String, CodingKey { case names, bytes, files }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        names = try container.decode([String].self, forKey: .names)
        bytes = try container.decode(Int64.self, forKey: .bytes)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(names, forKey: .names)
        try container.encode(bytes, forKey: .bytes)
        try container.encode(files, forKey: .files)
    }
}
