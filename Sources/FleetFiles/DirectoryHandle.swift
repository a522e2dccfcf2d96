import Glibc
public import SystemPackage

/// A directory opened once, whose files are examined, read and removed relative to it (`fstatat`, `openat`,
/// `pread`, `unlinkat`): renaming the directory or putting a link in a path's place redirects nothing.
///
/// Made for directories whose contents are hostile until checked, such as a host's `logs/` in its chroot.
/// A file is read only when it is a regular file with one link (a hard link may be another file's contents)
/// under the caller's cap: it is opened with `O_NOFOLLOW` (a link is refused), `O_NONBLOCK` (a FIFO cannot
/// block the open) and `O_NOCTTY`, checked with `fstat` on the open descriptor, and no more than the cap is
/// ever read. A file that grows while it is read is refused, not truncated.
public final class DirectoryHandle: Sendable {
    public let path: String
    public let descriptor: FileDescriptor

    private init(path: String, descriptor: FileDescriptor) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { Syscall.close(descriptor) }

    /// Opens `path` as a directory without following a link at its last component; nil when it does not exist.
    ///
    /// - Throws: `.refused` when `path` is a link or not a directory, `.transient` when it cannot be opened now
    ///   (the reason is then the system's words).
    public static func open(_ path: String) throws(FileRefusal) -> DirectoryHandle? {
        do {
            let descriptor = try Syscall.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            return DirectoryHandle(path: path, descriptor: descriptor)
        } catch {
            if error == .noSuchFileOrDirectory { return nil }
            if error == .tooManySymbolicLinkLevels || error == .notDirectory {
                throw FileRefusal(.refused, "is not a directory (a link or a file)")
            }
            let words = Self.words(error)
            throw FileRefusal(.transient, words, systemReason: words)
        }
    }

    /// Runs `body` with `path` opened as by ``open(_:)`` (nil when missing), closing it after.
    public static func withDirectory<Result>(
        _ path: String, _ body: (DirectoryHandle?) throws(FileRefusal) -> Result
    ) throws(FileRefusal) -> Result {
        let directory = try open(path)
        defer { withExtendedLifetime(directory) {} }
        return try body(directory)
    }

    /// Names in the directory (not `.` and `..`), at most `limit`, from its start; `more` when there were others.
    /// An empty list when the directory cannot be read.
    public func names(limit: Int) -> (names: [String], more: Bool) {
        // readdir moves the offset of the descriptor it reads: read a duplicate, from the start.
        guard let copy = try? descriptor.duplicate() else { return ([], false) }
        guard let stream = fdopendir(copy.rawValue) else {
            Syscall.close(copy)
            return ([], false)
        }
        defer { closedir(stream) }
        rewinddir(stream)
        return FileIO.entries(of: stream, limit: limit)
    }

    /// What `lstat` says of `name` (a link is not followed), or nil when it is gone or cannot be examined.
    public func status(of name: String) -> FileStatus? {
        guard let raw = try? Syscall.status(of: name, relativeTo: descriptor) else { return nil }
        return FileStatus(raw)
    }

    /// Reads the whole of `name`, a regular file of at most `limit` bytes.
    public func read(_ name: String, limit: Int) throws(FileRefusal) -> (bytes: [UInt8], status: FileStatus) {
        try withRegularFile(name, sizeLimit: limit) { file, status throws(FileRefusal) in
            // One byte more than fstat said: reading it means the file is being written to.
            var bytes = [UInt8](repeating: 0, count: Int(status.size) + 1)
            let count = try Self.readFully(file, into: &bytes, at: 0)
            guard count <= Int(status.size) else {
                throw FileRefusal(
                    .refused, "changed while being read (fleet-client writes a new file and renames it)",
                    status: status)
            }
            bytes.removeLast(bytes.count - count)
            return (bytes, status)
        }
    }

    /// Reads `name`, a regular file of any size: whole (`tail` nil) when it is at most `head + tail` bytes,
    /// else its first `head` and its last `tail` bytes.
    public func readEnds(
        _ name: String, head: Int, tail: Int
    ) throws(FileRefusal) -> (head: [UInt8], tail: [UInt8]?, status: FileStatus) {
        try withRegularFile(name, sizeLimit: nil) { file, status throws(FileRefusal) in
            let size = Int(status.size)
            if size <= head + tail {
                var bytes = [UInt8](repeating: 0, count: size)
                let count = try Self.readFully(file, into: &bytes, at: 0)
                bytes.removeLast(bytes.count - count)
                return (bytes, nil, status)
            }
            var first = [UInt8](repeating: 0, count: head)
            var last = [UInt8](repeating: 0, count: tail)
            let firstCount = try Self.readFully(file, into: &first, at: 0)
            let lastCount = try Self.readFully(file, into: &last, at: Int64(size - tail))
            first.removeLast(head - firstCount)
            last.removeLast(tail - lastCount)
            return (first, last, status)
        }
    }

    /// Removes `name` if it is a regular file and `isStill` accepts its status (say, still the file that was
    /// read: same inode, size and mtime). True when it was removed.
    @discardableResult
    public func removeFile(_ name: String, ifStill isStill: (FileStatus) -> Bool) -> Bool {
        guard let current = status(of: name), current.kind == .regular, isStill(current) else { return false }
        return (try? Syscall.retrying { unlinkat(descriptor.rawValue, name, 0) }) != nil
    }

    /// Opens `name` and runs `body` on it when it is a regular file with one link under `sizeLimit` bytes.
    private func withRegularFile<Result>(
        _ name: String, sizeLimit: Int?, _ body: (FileDescriptor, FileStatus) throws(FileRefusal) -> Result
    ) throws(FileRefusal) -> Result {
        let before = status(of: name)
        let file: FileDescriptor
        do {
            file = try Syscall.open(name, relativeTo: descriptor, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
        } catch {
            let words = Self.words(error)
            switch error.rawValue {
            case ENOENT: throw FileRefusal(.vanished, "vanished")
            case ELOOP: throw FileRefusal(.refused, "is a symbolic link: not followed", status: before)
            case ENXIO: throw FileRefusal(.refused, "is a socket or device, not a regular file", status: before)
            case EMFILE, ENFILE, ENOMEM, EIO, EAGAIN:
                throw FileRefusal(.transient, "cannot be opened now: \(words)", systemReason: words)
            default:
                throw FileRefusal(.refused, "cannot be opened: \(words)", status: before, systemReason: words)
            }
        }
        defer { Syscall.close(file) }
        let status: FileStatus
        do {
            status = FileStatus(try Syscall.status(of: file))
        } catch {
            throw FileRefusal(.transient, "fstat failed: \(Self.words(error))", systemReason: Self.words(error))
        }
        switch status.kind {
        case .regular: break
        case .directory: throw FileRefusal(.refused, "is a directory", status: status)
        case .other where status.isFIFO:
            throw FileRefusal(.refused, "is a FIFO, not a regular file", status: status)
        default: throw FileRefusal(.refused, "is not a regular file", status: status)
        }
        if status.linkCount > 1 {
            throw FileRefusal(
                .refused, "has \(status.linkCount) hard links (it may be another file's contents)", status: status)
        }
        if let sizeLimit, status.size > Int64(sizeLimit) {
            throw FileRefusal(.refused, "is \(status.size) bytes, over the cap of \(sizeLimit)", status: status)
        }
        return try body(file, status)
    }

    /// `pread` until `buffer` is full or the file ends: the count read.
    private static func readFully(
        _ file: FileDescriptor, into buffer: inout [UInt8], at offset: Int64
    ) throws(FileRefusal) -> Int {
        let result = buffer.withUnsafeMutableBytes { raw in
            Result { () throws(Errno) -> Int in
                var total = 0
                while total < raw.count {
                    let count = try Syscall.read(
                        file, into: UnsafeMutableRawBufferPointer(rebasing: raw[total...]), at: offset + Int64(total))
                    if count == 0 { break }
                    total += count
                }
                return total
            }
        }
        do {
            return try result.get()
        } catch {
            let words = Self.words(error)
            throw FileRefusal(.transient, "read failed: \(words)", systemReason: words)
        }
    }

    /// The system's words for `error`, as `strerror` gives them.
    static func words(_ error: Errno) -> String { String(cString: strerror(error.rawValue)) }
}
