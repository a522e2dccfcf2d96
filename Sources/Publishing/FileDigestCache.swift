import FleetFiles
import FleetProtocol
import Glibc
import Synchronization
import SystemPackage

/// SHA-256 of the repository's files by path, trusted only while a file keeps the ``FileIdentity`` (device,
/// inode, size, modification and change times) it had when it was hashed.
///
/// A publish reads each file once, however many hosts share it. With a storage path the digests are also kept
/// between publishes, in `<state_dir>/file-digests`, so that a republish reads only the files that changed.
/// A digest is kept for a later run only when it cannot be stale: the file had the same identity before and
/// after it was read, and its change time was at least ``racyMarginNanoseconds`` in the past when the read
/// began. Any later write then gives it a newer change time, even where timestamps are coarse (git's "racy
/// clean" problem); the change time is set by the kernel, so `touch -d` cannot fake an old one.
final class FileDigestCache: Sendable {
    static let fileName = "file-digests"
    /// Larger than any timestamp granularity of a Linux filesystem (FAT's 2 s is the coarsest).
    static let racyMarginNanoseconds: Int64 = 3_000_000_000
    private static let header = "fleet file digests v1\n"

    private struct Record {
        var identity: FileIdentity
        var sha256: String
        /// Safe to keep for a later run (see the type's documentation).
        var durable: Bool
        /// Looked up or computed in this run.
        var used: Bool
    }

    private struct State {
        var records: [String: Record] = [:]
        /// A durable digest was learnt in this run: the stored file is out of date.
        var changed = false
    }

    private let state: Mutex<State>
    /// Where the digests are kept between runs; nil keeps them for this process only.
    let storagePath: String?
    /// Tells how long ago a file last changed.
    let clock: WallClock

    /// A cache for this process only.
    init(clock: WallClock = .system) {
        storagePath = nil
        state = Mutex(State())
        self.clock = clock
    }

    /// A cache that starts from the digests stored at `path`. A missing, unsafe or damaged file is ignored:
    /// everything is then hashed again, which is slower and nothing else.
    init(storedAt path: String, clock: WallClock = .system) {
        storagePath = path
        state = Mutex(State(records: Self.load(path)))
        self.clock = clock
    }

    /// The SHA-256 of the regular file at `path`, which the caller found with `status`.
    ///
    /// - Throws: when the file cannot be read, or is not the file `status` describes any more (it was
    ///   replaced or written meanwhile), so that a digest never stands for bytes other than the ones `status`
    ///   identifies.
    func digest(of path: String, status: FileStatus) throws(FileSystemError) -> String {
        let identity = status.identity
        let known: String? = state.withLock { state in
            guard let index = state.records.index(forKey: path), state.records.values[index].identity == identity
            else { return nil }
            state.records.values[index].used = true
            return state.records.values[index].sha256
        }
        if let known { return known }
        let (sha256, durable) = try Self.hash(path, expecting: identity, clock: clock)
        state.withLock { state in
            state.records[path] = Record(identity: identity, sha256: sha256, durable: durable, used: true)
            if durable { state.changed = true }
        }
        return sha256
    }

    /// Stores the durable digests for the next run, if this run learnt any. A digest this run did not use is
    /// kept only while its file still has the recorded identity, so publishing some hosts keeps the others'.
    func save() throws(FileSystemError) {
        guard let storagePath else { return }
        let records: [(path: String, record: Record)]? = state.withLock { state in
            guard state.changed else { return nil }
            state.changed = false
            return state.records.lazy.filter { $0.value.durable }.map { ($0.key, $0.value) }
        }
        guard let records else { return }
        var text = Array(Self.header.utf8)
        text.reserveCapacity(records.count * 200)
        for (path, record) in records {
            // A newline would end the record early; such a file is simply hashed on every run.
            guard !path.utf8.contains(UInt8(ascii: "\n")) else { continue }
            if !record.used {
                guard let status = try? FileStatus.of(path), status.identity == record.identity else { continue }
            }
            let identity = record.identity
            text += record.sha256.utf8
            for number in [
                Int64(bitPattern: identity.device), Int64(bitPattern: identity.inode), identity.size,
                identity.modificationSeconds, identity.modificationNanoseconds, identity.changeSeconds,
                identity.changeNanoseconds,
            ] {
                text.append(UInt8(ascii: " "))
                text.appendDigits(number)
            }
            text.append(UInt8(ascii: " "))
            text += path.utf8
            text.append(UInt8(ascii: "\n"))
        }
        try FileIO.writeAtomically(text, to: storagePath, mode: 0o600)
    }

    // MARK: - Private

    /// Hashes the file at `path`, making sure it is the version `identity` names from open to end of read.
    private static func hash(
        _ path: String, expecting identity: FileIdentity, clock: WallClock
    ) throws(FileSystemError) -> (sha256: String, durable: Bool) {
        let now = clock.nanosecondsSinceEpoch
        let (descriptor, status) = try FileIO.openRegularNoFollow(path)
        let sha256 = try FileIO.closeAfter(descriptor) { (descriptor) throws(FileSystemError) in
            guard status.identity == identity else { throw changedWhileRead(path) }
            let sha256 = try FileIO.sha256(of: FileDescriptor(rawValue: descriptor), path: path)
            guard try FileStatus.of(descriptor: descriptor, path: path).identity == identity else {
                throw changedWhileRead(path)
            }
            return sha256
        }
        let changed = identity.changeSeconds * 1_000_000_000 + identity.changeNanoseconds
        return (sha256, changed <= now - racyMarginNanoseconds)
    }

    private static func changedWhileRead(_ path: String) -> FileSystemError {
        FileSystemError("read", path: path, errno: EAGAIN, detail: "changed while it was read; publish again")
    }

    /// Reads the stored digests. Only a regular file owned by this user and writable by nobody else is
    /// trusted, and any damage discards all of it.
    private static func load(_ path: String) -> [String: Record] {
        guard let status = try? FileStatus.of(path), status.kind == .regular, FileIO.isPrivateToEffectiveUser(status),
            let bytes = try? FileIO.readNoFollow(path, limit: 1 << 30),
            bytes.starts(with: header.utf8)
        else { return [:] }
        return bytes.withUnsafeBufferPointer { parse(UnsafeBufferPointer(rebasing: $0[header.utf8.count...])) } ?? [:]
    }

    /// Parses stored lines: `sha256 device inode size mtime-s mtime-ns ctime-s ctime-ns path`. Hand-rolled
    /// because it runs on every publish, over one line per file in the fleet.
    private static func parse(_ text: UnsafeBufferPointer<UInt8>) -> [String: Record]? {
        var records: [String: Record] = [:]
        records.reserveCapacity(text.count / 160)
        var cursor = Cursor(text: text)
        while !cursor.isAtEnd {
            guard let sha256 = cursor.hexDigest(), cursor.skip(" "), let device = cursor.field(),
                let inode = cursor.field(), let size = cursor.field(), let modificationSeconds = cursor.field(),
                let modificationNanoseconds = cursor.field(), let changeSeconds = cursor.field(),
                let changeNanoseconds = cursor.field(), let path = cursor.line(), path.hasPrefix("/")
            else { return nil }
            let identity = FileIdentity(
                device: UInt64(bitPattern: device), inode: UInt64(bitPattern: inode), size: size,
                modificationSeconds: modificationSeconds, modificationNanoseconds: modificationNanoseconds,
                changeSeconds: changeSeconds, changeNanoseconds: changeNanoseconds)
            records[path] = Record(identity: identity, sha256: sha256, durable: true, used: false)
        }
        return records
    }

    /// A position in the stored text.
    private struct Cursor {
        let text: UnsafeBufferPointer<UInt8>
        var position = 0

        var isAtEnd: Bool { position == text.count }

        mutating func skip(_ character: Unicode.Scalar) -> Bool {
            guard position < text.count, text[position] == UInt8(ascii: character) else { return false }
            position += 1
            return true
        }

        /// 64 lowercase hex digits.
        mutating func hexDigest() -> String? {
            let end = position + 64
            guard end <= text.count else { return nil }
            for byte in text[position..<end] where !((0x30...0x39).contains(byte) || (0x61...0x66).contains(byte)) {
                return nil
            }
            defer { position = end }
            return String(decoding: UnsafeBufferPointer(rebasing: text[position..<end]), as: UTF8.self)
        }

        /// A decimal integer and the space after it.
        mutating func field() -> Int64? {
            guard let value = decimal(), skip(" ") else { return nil }
            return value
        }

        /// A decimal integer, optionally negative, that fits in 64 bits.
        mutating func decimal() -> Int64? {
            let negative = skip("-")
            let start = position
            var magnitude: UInt64 = 0
            while position < text.count, (0x30...0x39).contains(text[position]) {
                let (shifted, overflowed) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, carried) = shifted.addingReportingOverflow(UInt64(text[position] - 0x30))
                guard !overflowed, !carried else { return nil }
                magnitude = sum
                position += 1
            }
            guard position > start else { return nil }
            if negative { return magnitude <= Int64.min.magnitude ? Int64(truncatingIfNeeded: 0 &- magnitude) : nil }
            return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
        }

        /// The rest of the line, and past its newline.
        mutating func line() -> String? {
            let start = position
            while position < text.count, text[position] != UInt8(ascii: "\n") { position += 1 }
            guard position < text.count, position > start else { return nil }
            defer { position += 1 }
            return String(decoding: UnsafeBufferPointer(rebasing: text[start..<position]), as: UTF8.self)
        }
    }
}
