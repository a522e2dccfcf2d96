import FleetFiles
import FleetTestSupport
import Glibc
import NixKit

/// The server's cache entries (``CacheEntry``: a narinfo, an empty line, a NAR) as the tests read and forge them.
enum CacheEntryFiles {
    /// The entry of `storePath` in the cache directory `cache` (a host's `cache/`, or the pool's `entries/`).
    static func path(in cache: String, of storePath: String) -> String {
        cache + "/" + CacheEntry.fileName(ofHashPart: String(storePath.dropFirst("/nix/store/".count).prefix(32)))
    }

    /// The entry's narinfo and NAR bytes.
    static func parts(_ entry: String) throws -> (narinfo: String, nar: [UInt8]) {
        let bytes = try FileIO.readNoFollow(entry, limit: 1 << 30)
        guard let (narinfo, offset) = CacheEntry.split(head: bytes) else {
            throw TestSupportError("\(entry) has no narinfo followed by an empty line")
        }
        return (String(decoding: narinfo, as: UTF8.self), Array(bytes[offset...]))
    }

    static func narinfo(_ entry: String) throws -> String { try parts(entry).narinfo }

    /// The NAR's file name in a Nix cache's `nar/`, as the entry's narinfo gives it (`URL: nar/<file>`).
    static func narFile(_ entry: String) throws -> String {
        let narinfo = try narinfo(entry)
        guard let line = narinfo.split(separator: "\n").first(where: { $0.hasPrefix("URL: nar/") }) else {
            throw TestSupportError("\(entry) has no URL line")
        }
        return String(line.dropFirst("URL: nar/".count))
    }

    /// Replaces the entry by rename (the pool's inode, which other names link, stays as it was) with `header`
    /// in front of its NAR; `header` is the narinfo text transformed, followed by the empty line unless
    /// `separated` is false.
    static func rewrite(_ entry: String, separated: Bool = true, narinfo transform: (String) -> String) throws {
        let (narinfo, nar) = try parts(entry)
        let header = Array(transform(narinfo).utf8) + (separated ? [0x0A] : [])
        try FileIO.writeAtomically(header + nar, to: entry, mode: 0o644)
    }

    /// Replaces the entry by rename with exactly `bytes`.
    static func replace(_ entry: String, with bytes: [UInt8]) throws {
        try FileIO.writeAtomically(bytes, to: entry, mode: 0o644)
    }

    /// Writes `bytes` into the file at `offset`, in place: every link to the inode (the pool's entry and each
    /// host's name) sees them, as with bit rot on the server's disk.
    static func overwrite(_ path: String, at offset: Int, with bytes: [UInt8]) throws {
        let descriptor = open(path, O_WRONLY)
        guard descriptor >= 0 else { throw TestSupportError("open \(path): errno \(errno)") }
        defer { close(descriptor) }
        let written = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(offset)) }
        guard written == bytes.count else { throw TestSupportError("pwrite \(path): errno \(errno)") }
    }
}
