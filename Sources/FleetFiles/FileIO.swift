import Glibc
public import SystemPackage

/// Small, careful file operations: reads that refuse links and cap sizes, writes that are durable and atomic.
///
/// Every system call goes through ``Syscall`` (one rule for `EINTR`); descriptors are swift-system's
/// `FileDescriptor`. The `Int32` forms are kept for callers not yet converted.
public enum FileIO {
    /// Reads a regular file without following a symbolic link at its last component.
    ///
    /// - Throws: when `path` is a link, not a regular file, or larger than `limit` bytes.
    public static func readNoFollow(_ path: String, limit: Int = 64 << 20) throws(FileSystemError) -> [UInt8] {
        try withRegularFileNoFollow(path) { descriptor, status throws(FileSystemError) in
            guard status.size <= limit else {
                throw FileSystemError(
                    "read", path: path, errno: EFBIG, detail: "is \(status.size) bytes, over the limit of \(limit)")
            }
            return try readAll(descriptor, path: path, limit: limit)
        }
    }

    /// Opens a regular file for reading, refusing a link at its last component, and returns it with its status.
    /// The caller closes the descriptor. `O_NONBLOCK` only so that a FIFO put in the file's place cannot hang.
    public static func openRegularNoFollow(
        _ path: String
    ) throws(FileSystemError) -> (descriptor: Int32, status: FileStatus) {
        let (descriptor, status) = try openRegularFileNoFollow(path)
        return (descriptor.rawValue, status)
    }

    /// ``openRegularNoFollow(_:)`` as a `FileDescriptor`, which the caller closes.
    public static func openRegularFileNoFollow(
        _ path: String
    ) throws(FileSystemError) -> (descriptor: FileDescriptor, status: FileStatus) {
        let descriptor: FileDescriptor
        do {
            descriptor = try Syscall.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        } catch {
            if error == .tooManySymbolicLinkLevels {
                throw FileSystemError("open", path: path, code: error, detail: "is a symbolic link (refused)")
            }
            throw FileSystemError("open", path: path, code: error)
        }
        do throws(FileSystemError) {
            let status = try FileStatus.of(descriptor: descriptor, path: path)
            guard status.kind == .regular else {
                throw FileSystemError("open", path: path, errno: EINVAL, detail: "is not a regular file (refused)")
            }
            return (descriptor, status)
        } catch {
            Syscall.close(descriptor)
            throw error
        }
    }

    /// Runs `body` on `path` opened as by ``openRegularNoFollow(_:)``, and closes it after (like swift-system's
    /// `closeAfter`).
    public static func withRegularFileNoFollow<Result>(
        _ path: String, _ body: (FileDescriptor, FileStatus) throws(FileSystemError) -> Result
    ) throws(FileSystemError) -> Result {
        let (descriptor, status) = try openRegularFileNoFollow(path)
        defer { Syscall.close(descriptor) }
        return try body(descriptor, status)
    }

    /// The first `length` bytes of a regular file (all of it when shorter), refusing a link at its last component.
    public static func readHeadNoFollow(_ path: String, length: Int) throws(FileSystemError) -> [UInt8] {
        try withRegularFileNoFollow(path) { descriptor, _ throws(FileSystemError) in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(length, 1), alignment: 16)
            defer { buffer.deallocate() }
            var filled = 0
            while filled < length {
                let count = try FileSystemError.attempt("read", path: path) { () throws(Errno) in
                    try Syscall.read(
                        descriptor, into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<length]),
                        at: Int64(filled))
                }
                if count == 0 { break }
                filled += count
            }
            return Array(buffer[..<filled])
        }
    }

    /// Reads a file, following links (for trusted inputs such as the fleet repository after resolution).
    public static func read(_ path: String, limit: Int = 1 << 30) throws(FileSystemError) -> [UInt8] {
        let descriptor = try FileSystemError.attempt("open", path: path) { () throws(Errno) in
            try Syscall.open(path, O_RDONLY)
        }
        defer { Syscall.close(descriptor) }
        return try readAll(descriptor, path: path, limit: limit)
    }

    /// Reads from the descriptor's offset to the end, refusing more than `limit` bytes.
    public static func readAll(
        _ descriptor: FileDescriptor, path: String, limit: Int
    ) throws(FileSystemError) -> [UInt8] {
        var result: [UInt8] = []
        try forEachChunk(of: descriptor, path: path, chunkSize: 64 << 10) { chunk throws(FileSystemError) in
            result.append(contentsOf: chunk)
            if result.count > limit {
                throw FileSystemError("read", path: path, errno: EFBIG, detail: "exceeds the limit of \(limit) bytes")
            }
        }
        return result
    }

    /// Reads from the descriptor's offset to the end in chunks of at most `chunkSize` bytes, handing each to
    /// `body` (valid only during the call): the one read loop of whole reads, digests and copies.
    public static func forEachChunk(
        of descriptor: FileDescriptor, path: String, chunkSize: Int,
        _ body: (UnsafeRawBufferPointer) throws(FileSystemError) -> Void
    ) throws(FileSystemError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = try FileSystemError.attempt("read", path: path) { () throws(Errno) in
                try Syscall.read(descriptor, into: buffer)
            }
            if count == 0 { break }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
    }

    /// Writes all of `bytes` to `descriptor`.
    public static func writeAll(_ descriptor: FileDescriptor, _ bytes: [UInt8], path: String) throws(FileSystemError) {
        let written = bytes.withUnsafeBytes { buffer in
            Result { () throws(FileSystemError) in
                try writeAll(descriptor, buffer, path: path)
            }
        }
        try written.get()
    }

    /// Writes all of `buffer` to `descriptor`.
    public static func writeAll(
        _ descriptor: FileDescriptor, _ buffer: UnsafeRawBufferPointer, path: String
    ) throws(FileSystemError) {
        try FileSystemError.attempt("write", path: path) { () throws(Errno) in
            try Syscall.writeAll(descriptor, buffer)
        }
    }

    /// Writes all of `bytes` to `fd`.
    public static func writeAll(fd: Int32, _ bytes: [UInt8], path: String) throws(FileSystemError) {
        try writeAll(FileDescriptor(rawValue: fd), bytes, path: path)
    }

    /// Writes `text` to a standard stream (the terminal, the journal, the page that started the run), as much of
    /// it as can be written. A reader that went away (EPIPE) or any other error ends the write silently: what a
    /// run prints is never worth dying for, and the run's log keeps it anyway.
    public static func writeToStream(_ fd: Int32, _ text: String) {
        try? writeAll(fd: fd, Array(text.utf8), path: "standard stream \(fd)")
    }

    /// Replaces `path` atomically: write a temporary file beside it, fsync, set owner and mode, rename, fsync
    /// the directory. A crash leaves either the old file or the new one, never a mix.
    ///
    /// - Parameter durable: false skips both fsyncs. Readers still never see a half-written file, but after a
    ///   crash the file may be old, empty or missing: only for files whose loss costs nothing.
    public static func writeAtomically(
        _ bytes: [UInt8], to path: String, mode: UInt32 = 0o644, owner: UInt32? = nil, group: UInt32? = nil,
        durable: Bool = true, beforeRename: () -> Void = {}
    ) throws(FileSystemError) {
        let temporary = temporaryPath(for: path)
        let descriptor = try FileSystemError.attempt("create", path: temporary) { () throws(Errno) in
            try Syscall.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode)
        }
        var closed = false
        defer {
            if !closed { Syscall.close(descriptor) }
        }
        do throws(FileSystemError) {
            try writeAll(descriptor, bytes, path: temporary)
            try setOwnership(descriptor, path: temporary, mode: mode, owner: owner, group: group)
            if durable { try sync(descriptor, path: temporary) }
            Syscall.close(descriptor)
            closed = true
            beforeRename()
            try rename(temporary, to: path)
        } catch {
            _ = try? removeFile(temporary)
            throw error
        }
        if durable { try syncDirectory(of: path) }
    }

    /// The temporary name used beside `path` while writing it; `.fleet-tmp-` files are swept by the publisher.
    public static func temporaryPath(for path: String) -> String {
        let (directory, name) = split(path)
        return "\(directory)/.fleet-tmp-\(getpid())-\(name)"
    }

    /// The prefix of every temporary file this module writes, so that a later run can remove leftovers.
    public static let temporaryPrefix = ".fleet-tmp-"

    static func setOwnership(
        _ descriptor: FileDescriptor, path: String, mode: UInt32, owner: UInt32?, group: UInt32?
    ) throws(FileSystemError) {
        if owner != nil || group != nil {
            _ = try FileSystemError.attempt("chown", path: path) { () throws(Errno) in
                try Syscall.retrying { fchown(descriptor.rawValue, owner ?? UInt32.max, group ?? UInt32.max) }
            }
        }
        _ = try FileSystemError.attempt("chmod", path: path) { () throws(Errno) in
            try Syscall.retrying { fchmod(descriptor.rawValue, mode) }
        }
    }

    /// `fsync(2)`: the file's data and metadata reach the disk before this returns.
    public static func sync(_ descriptor: FileDescriptor, path: String) throws(FileSystemError) {
        _ = try FileSystemError.attempt("fsync", path: path) { () throws(Errno) in
            try Syscall.retrying { fsync(descriptor.rawValue) }
        }
    }

    /// Flushes a directory entry change (create, rename, unlink) to disk.
    public static func syncDirectory(of path: String) throws(FileSystemError) {
        let directory = split(path).directory
        let descriptor = try FileSystemError.attempt("open", path: directory) { () throws(Errno) in
            try Syscall.open(directory, O_RDONLY | O_DIRECTORY)
        }
        defer { Syscall.close(descriptor) }
        try sync(descriptor, path: directory)
    }

    /// Splits a path into its directory and last component.
    public static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    /// Names in a directory, unsorted, without `.` and `..`.
    public static func listDirectory(_ path: String) throws(FileSystemError) -> [String] {
        let stream = try FileSystemError.attempt("opendir", path: path) { () throws(Errno) in
            try Syscall.retrying { opendir(path) }
        }
        defer { closedir(stream) }
        return entries(of: stream, limit: Int.max).names
    }

    /// The names `readdir` gives (not `.` and `..`), at most `limit`; `more` when there were others.
    static func entries(of stream: OpaquePointer, limit: Int) -> (names: [String], more: Bool) {
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

    /// Creates `path` as a directory if missing and sets its owner and mode; refuses a link or non-directory.
    public static func ensureDirectory(
        _ path: String, mode: UInt32, owner: UInt32 = 0, group: UInt32 = 0
    ) throws(FileSystemError) {
        try makeDirectory(path, mode: mode)
        guard let status = try FileStatus.of(path) else { throw FileSystemError("mkdir", path: path, errno: ENOENT) }
        guard status.kind == .directory else { throw notADirectory(path) }
        if status.owner != owner || status.group != group { try setOwner(path, owner: owner, group: group) }
        if status.permissions != mode { try setMode(path, mode) }
    }

    /// True when `path` is a directory, false when nothing is there.
    ///
    /// - Throws: when something other than a directory (a link, a file) is there.
    public static func isExistingDirectory(_ path: String) throws(FileSystemError) -> Bool {
        guard let status = try FileStatus.of(path) else { return false }
        guard status.kind == .directory else { throw notADirectory(path) }
        return true
    }

    private static func notADirectory(_ path: String) -> FileSystemError {
        FileSystemError("mkdir", path: path, errno: ENOTDIR, detail: "exists and is not a directory")
    }

    /// Creates every missing directory of `path` with mode 0755 (like `mkdir -p`); existing ones are left as they are.
    public static func createDirectories(_ path: String, mode: UInt32 = 0o755) throws(FileSystemError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            try makeDirectory(current, mode: mode)
        }
    }

    /// `mkdir(2)`; a name that already exists (of any kind) is left alone.
    private static func makeDirectory(_ path: String, mode: UInt32) throws(FileSystemError) {
        do {
            _ = try Syscall.retrying { mkdir(path, mode) }
        } catch {
            if error != .fileExists { throw FileSystemError("mkdir", path: path, code: error) }
        }
    }

    /// Sets the owner and group of `path` itself, not of what a link at `path` points to (`lchown`).
    public static func setOwner(_ path: String, owner: UInt32, group: UInt32) throws(FileSystemError) {
        _ = try FileSystemError.attempt("chown", path: path) { () throws(Errno) in
            try Syscall.retrying { lchown(path, owner, group) }
        }
    }

    /// Sets the permission bits of `path` (`chmod`, which follows a link: check the kind first).
    public static func setMode(_ path: String, _ mode: UInt32) throws(FileSystemError) {
        _ = try FileSystemError.attempt("chmod", path: path) { () throws(Errno) in
            try Syscall.retrying { chmod(path, mode) }
        }
    }

    /// Renames `source` to `destination`, replacing it atomically.
    public static func rename(_ source: String, to destination: String) throws(FileSystemError) {
        _ = try FileSystemError.attempt("rename", path: "\(source) -> \(destination)") { () throws(Errno) in
            try Syscall.retrying { Glibc.rename(source, destination) }
        }
    }

    /// Frees a regular file's data and keeps its name and inode (`ftruncate` to 0 bytes, never following a
    /// link): false when nothing was there.
    @discardableResult
    public static func truncateToEmpty(_ path: String) throws(FileSystemError) -> Bool {
        let descriptor: FileDescriptor
        do {
            descriptor = try Syscall.open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK)
        } catch {
            if error == .noSuchFileOrDirectory { return false }
            throw FileSystemError("open", path: path, code: error)
        }
        defer { Syscall.close(descriptor) }
        _ = try FileSystemError.attempt("truncate", path: path) { () throws(Errno) in
            try Syscall.retrying { ftruncate(descriptor.rawValue, 0) }
        }
        return true
    }

    /// Removes a file, a link or a socket (not a directory): true when it was removed, false when nothing was
    /// there.
    @discardableResult
    public static func removeFile(_ path: String) throws(FileSystemError) -> Bool {
        do {
            _ = try Syscall.retrying { unlink(path) }
            return true
        } catch {
            if error == .noSuchFileOrDirectory { return false }
            throw FileSystemError("unlink", path: path, code: error)
        }
    }

    /// Removes a file or a whole directory tree, never following links.
    public static func removeTree(_ path: String) throws(FileSystemError) {
        guard let status = try FileStatus.of(path) else { return }
        if status.kind == .directory {
            for name in try listDirectory(path) { try removeTree(path + "/" + name) }
            _ = try FileSystemError.attempt("rmdir", path: path) { () throws(Errno) in
                try Syscall.retrying { rmdir(path) }
            }
        } else {
            try removeFile(path)
        }
    }

    /// The canonical absolute path, links resolved, or nil when a component is missing or loops.
    public static func realPath(_ path: String) -> Result<String, FileSystemError> {
        let resolved: UnsafeMutablePointer<CChar>
        do {
            resolved = try Syscall.retrying { Glibc.realpath(path, nil) }
        } catch {
            return .failure(FileSystemError("realpath", path: path, code: error))
        }
        defer { free(resolved) }
        return .success(String(cString: resolved))
    }

    /// Reads the target of a symbolic link.
    public static func readLink(_ path: String) throws(FileSystemError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let capacity = buffer.count - 1
        let count = try FileSystemError.attempt("readlink", path: path) { () throws(Errno) in
            try Syscall.retrying { readlink(path, &buffer, capacity) }
        }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
