import Glibc

/// What `fstat` says identifies one file: when any of these change, it is not the file that was read.
public struct FileIdentity: Equatable, Sendable {
    public let size: Int64
    public let modificationNanoseconds: Int64
    public let inode: UInt64

    init(_ raw: stat) {
        size = Int64(raw.st_size)
        modificationNanoseconds =
            Int64(raw.st_mtim.tv_sec) * ReviewTime.nanosecondsPerSecond + Int64(raw.st_mtim.tv_nsec)
        inode = UInt64(raw.st_ino)
    }

    init(size: Int64, modificationNanoseconds: Int64, inode: UInt64) {
        self.size = size
        self.modificationNanoseconds = modificationNanoseconds
        self.inode = inode
    }
}

/// A file from `logs/` that passed the checks, and what was kept of it.
struct UploadedFile {
    let bytes: [UInt8]
    let identity: FileIdentity
}

/// What became of reading something of `logs/`: the value, or why it was not read.
enum Upload<Value> {
    case read(Value)
    case notRead(UploadRefusal)
}

/// Why a file was not read.
enum UploadRefusal {
    /// Refused for good while it stays as it is (a link, a FIFO, too large…): bookkept with this warning.
    case refused(String, FileIdentity?)
    /// Could not be read now (out of file descriptors, I/O error): tried again next run.
    case transient(String)
    /// Gone between the listing and the open (pruned, or replaced by the host): nothing to say.
    case vanished
}

/// One host's `logs/`, opened once, with every file opened relative to it.
///
/// The directory belongs to the host (mode 0700, its owner): everything in it is hostile until checked. Files
/// are opened with `O_NOFOLLOW | O_NONBLOCK` (a link is refused, a FIFO cannot block the open), then `fstat`
/// must say a regular file with one link and a size under the cap, and no more than the cap is ever read.
final class UploadDirectory {
    let path: String
    private let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    /// Opens `path` as a directory without following a link; nil when it does not exist.
    static func open(_ path: String) -> Upload<UploadDirectory?> {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let error = errno
            if error == ENOENT { return .read(nil) }
            if error == ELOOP || error == ENOTDIR {
                return .notRead(.refused("logs/ is not a directory (a link or a file): nothing in it was read", nil))
            }
            return .notRead(.transient("cannot open logs/: \(String(cString: strerror(error)))"))
        }
        return .read(UploadDirectory(path: path, fd: fd))
    }

    /// Names in the directory (not `.` and `..`), at most `limit`; `more` when there were others.
    func names(limit: Int) -> (names: [String], more: Bool) {
        let copy = dup(fd)
        guard copy >= 0, let stream = fdopendir(copy) else {
            if copy >= 0 { close(copy) }
            return ([], false)
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            if names.count == limit { return (names, true) }
            names.append(name)
        }
        return (names, false)
    }

    /// What `lstat` says of a name (a link is not followed), or nil when it is gone.
    func identity(of name: String) -> (identity: FileIdentity, isRegular: Bool)? {
        var raw = stat()
        guard fstatat(fd, name, &raw, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return (FileIdentity(raw), raw.st_mode & S_IFMT == S_IFREG)
    }

    /// Reads a whole file of at most `limit` bytes.
    func read(_ name: String, limit: Int) -> Upload<UploadedFile> {
        withOpenFile(name, sizeLimit: limit) { file, identity in
            // One byte more than fstat said: reading it means the file is being written to.
            var bytes = [UInt8](repeating: 0, count: Int(identity.size) + 1)
            guard let count = readFully(file, into: &bytes, at: 0) else { return Self.readFailure() }
            guard count <= Int(identity.size) else {
                return .notRead(
                    .refused("changed while being read (fleet-client writes a new file and renames it)", identity))
            }
            bytes.removeLast(bytes.count - count)
            return .read(UploadedFile(bytes: bytes, identity: identity))
        }
    }

    /// Reads a log: whole when it is at most `head + tail` bytes, else its first `head` and last `tail` bytes
    /// with a line saying how much was left out.
    func readLog(_ name: String, head: Int, tail: Int) -> Upload<UploadedFile> {
        withOpenFile(name, sizeLimit: nil) { file, identity in
            let size = Int(identity.size)
            if size <= head + tail {
                var bytes = [UInt8](repeating: 0, count: size)
                guard let count = readFully(file, into: &bytes, at: 0) else { return Self.readFailure() }
                bytes.removeLast(bytes.count - count)
                return .read(UploadedFile(bytes: bytes, identity: identity))
            }
            var first = [UInt8](repeating: 0, count: head)
            var last = [UInt8](repeating: 0, count: tail)
            guard let firstCount = readFully(file, into: &first, at: 0),
                let lastCount = readFully(file, into: &last, at: off_t(size - tail))
            else { return Self.readFailure() }
            first.removeLast(head - firstCount)
            last.removeLast(tail - lastCount)
            let note =
                "\n[fleet: \(size - head - tail) bytes of this \(size)-byte log were not kept here "
                + "(the server keeps the first \(head) and the last \(tail))]\n"
            return .read(UploadedFile(bytes: first + Array(note.utf8) + last, identity: identity))
        }
    }

    private static func readFailure() -> Upload<UploadedFile> {
        .notRead(.transient("read failed: \(String(cString: strerror(errno)))"))
    }

    /// Deletes `name` if it is still the file that was ingested (same inode, size and mtime).
    @discardableResult
    func remove(_ name: String, ifStill expected: FileIdentity) -> Bool {
        guard let current = identity(of: name), current.isRegular, current.identity == expected else { return false }
        return unlinkat(fd, name, 0) == 0
    }

    private func withOpenFile(
        _ name: String, sizeLimit: Int?, _ body: (Int32, FileIdentity) -> Upload<UploadedFile>
    ) -> Upload<UploadedFile> {
        let before = identity(of: name)
        let file = openat(fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard file >= 0 else {
            let error = errno
            switch error {
            case ENOENT: return .notRead(.vanished)
            case ELOOP: return .notRead(.refused("is a symbolic link: not followed", before?.identity))
            case ENXIO: return .notRead(.refused("is a socket or device, not a regular file", before?.identity))
            case EMFILE, ENFILE, ENOMEM, EINTR, EIO, EAGAIN:
                return .notRead(.transient("cannot be opened now: \(String(cString: strerror(error)))"))
            default:
                return .notRead(.refused("cannot be opened: \(String(cString: strerror(error)))", before?.identity))
            }
        }
        defer { close(file) }
        var raw = stat()
        guard fstat(file, &raw) == 0 else {
            return .notRead(.transient("fstat failed: \(String(cString: strerror(errno)))"))
        }
        let identity = FileIdentity(raw)
        switch raw.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: return .notRead(.refused("is a directory", identity))
        case S_IFIFO: return .notRead(.refused("is a FIFO, not a regular file", identity))
        default: return .notRead(.refused("is not a regular file", identity))
        }
        if raw.st_nlink > 1 {
            return .notRead(.refused("has \(raw.st_nlink) hard links (it may be another file's contents)", identity))
        }
        if let sizeLimit, identity.size > Int64(sizeLimit) {
            return .notRead(.refused("is \(identity.size) bytes, over the cap of \(sizeLimit)", identity))
        }
        return body(file, identity)
    }

    /// `pread` until `buffer` is full or the file ends; returns the bytes read, nil when a read fails (errno).
    private func readFully(_ file: Int32, into buffer: inout [UInt8], at offset: off_t) -> Int? {
        var total = 0
        while total < buffer.count {
            let count = buffer.withUnsafeMutableBytes { raw in
                pread(file, raw.baseAddress! + total, raw.count - total, offset + off_t(total))
            }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { break }
            total += count
        }
        return total
    }
}
