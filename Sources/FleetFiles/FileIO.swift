import Glibc

/// Small, careful file operations: reads that refuse links and cap sizes, writes that are durable and atomic.
public enum FileIO {
    /// Reads a regular file without following a symbolic link at its last component.
    ///
    /// - Throws: when `path` is a link, not a regular file, or larger than `limit` bytes.
    public static func readNoFollow(_ path: String, limit: Int = 64 << 20) throws(FileSystemError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ELOOP { throw FileSystemError("open", path: path, detail: "is a symbolic link (refused)") }
            throw FileSystemError("open", path: path)
        }
        defer { close(fd) }
        var raw = stat()
        guard fstat(fd, &raw) == 0 else { throw FileSystemError("fstat", path: path) }
        guard raw.st_mode & S_IFMT == S_IFREG else {
            throw FileSystemError("open", path: path, errno: EINVAL, detail: "is not a regular file (refused)")
        }
        guard raw.st_size <= limit else {
            throw FileSystemError(
                "read", path: path, errno: EFBIG, detail: "is \(raw.st_size) bytes, over the limit of \(limit)")
        }
        return try readAll(fd: fd, path: path, limit: limit)
    }

    /// Opens a regular file for reading, refusing a link at its last component, and returns it with its status.
    /// The caller closes the descriptor. `O_NONBLOCK` only so that a FIFO put in the file's place cannot hang.
    public static func openRegularNoFollow(
        _ path: String
    ) throws(FileSystemError) -> (descriptor: Int32, status: FileStatus) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ELOOP { throw FileSystemError("open", path: path, detail: "is a symbolic link (refused)") }
            throw FileSystemError("open", path: path)
        }
        do throws(FileSystemError) {
            let status = try FileStatus.of(descriptor: fd, path: path)
            guard status.kind == .regular else {
                throw FileSystemError("open", path: path, errno: EINVAL, detail: "is not a regular file (refused)")
            }
            return (fd, status)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Reads a file, following links (for trusted inputs such as the fleet repository after resolution).
    public static func read(_ path: String, limit: Int = 1 << 30) throws(FileSystemError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError("open", path: path) }
        defer { close(fd) }
        return try readAll(fd: fd, path: path, limit: limit)
    }

    static func readAll(fd: Int32, path: String, limit: Int) throws(FileSystemError) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileSystemError("read", path: path)
            }
            if count == 0 { break }
            result.append(contentsOf: chunk[0..<count])
            if result.count > limit {
                throw FileSystemError("read", path: path, errno: EFBIG, detail: "exceeds the limit of \(limit) bytes")
            }
        }
        return result
    }

    /// Writes all of `bytes` to `fd`.
    public static func writeAll(fd: Int32, _ bytes: [UInt8], path: String) throws(FileSystemError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw FileSystemError("write", path: path)
            }
            offset += written
        }
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
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileSystemError("create", path: temporary) }
        var closed = false
        defer {
            if !closed { close(fd) }
        }
        do throws(FileSystemError) {
            try writeAll(fd: fd, bytes, path: temporary)
            try setOwnership(fd: fd, path: temporary, mode: mode, owner: owner, group: group)
            guard !durable || fsync(fd) == 0 else { throw FileSystemError("fsync", path: temporary) }
            close(fd)
            closed = true
            beforeRename()
            guard rename(temporary, path) == 0 else { throw FileSystemError("rename", path: "\(temporary) -> \(path)") }
        } catch {
            unlink(temporary)
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
        fd: Int32, path: String, mode: UInt32, owner: UInt32?, group: UInt32?
    ) throws(FileSystemError) {
        if owner != nil || group != nil {
            guard fchown(fd, owner ?? UInt32.max, group ?? UInt32.max) == 0 else {
                throw FileSystemError("chown", path: path)
            }
        }
        guard fchmod(fd, mode) == 0 else { throw FileSystemError("chmod", path: path) }
    }

    /// Flushes a directory entry change (create, rename, unlink) to disk.
    public static func syncDirectory(of path: String) throws(FileSystemError) {
        let directory = split(path).directory
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError("open", path: directory) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileSystemError("fsync", path: directory) }
    }

    /// Splits a path into its directory and last component.
    public static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    /// Names in a directory, unsorted, without `.` and `..`.
    public static func listDirectory(_ path: String) throws(FileSystemError) -> [String] {
        guard let directory = opendir(path) else { throw FileSystemError("opendir", path: path) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Creates `path` as a directory if missing and sets its owner and mode; refuses a link or non-directory.
    public static func ensureDirectory(
        _ path: String, mode: UInt32, owner: UInt32 = 0, group: UInt32 = 0
    ) throws(FileSystemError) {
        if mkdir(path, mode) != 0 && errno != EEXIST { throw FileSystemError("mkdir", path: path) }
        guard let status = try FileStatus.of(path) else { throw FileSystemError("mkdir", path: path, errno: ENOENT) }
        guard status.kind == .directory else {
            throw FileSystemError("mkdir", path: path, errno: ENOTDIR, detail: "exists and is not a directory")
        }
        if status.owner != owner || status.group != group {
            guard lchown(path, owner, group) == 0 else { throw FileSystemError("chown", path: path) }
        }
        if status.permissions != mode {
            guard chmod(path, mode) == 0 else { throw FileSystemError("chmod", path: path) }
        }
    }

    /// Creates every missing directory of `path` with mode 0755 (like `mkdir -p`); existing ones are left as they are.
    public static func createDirectories(_ path: String, mode: UInt32 = 0o755) throws(FileSystemError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) != 0 && errno != EEXIST { throw FileSystemError("mkdir", path: current) }
        }
    }

    /// Removes a file or a whole directory tree, never following links.
    public static func removeTree(_ path: String) throws(FileSystemError) {
        guard let status = try FileStatus.of(path) else { return }
        if status.kind == .directory {
            for name in try listDirectory(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 else { throw FileSystemError("rmdir", path: path) }
        } else {
            guard unlink(path) == 0 || errno == ENOENT else { throw FileSystemError("unlink", path: path) }
        }
    }

    /// The canonical absolute path, links resolved, or nil when a component is missing or loops.
    public static func realPath(_ path: String) -> Result<String, FileSystemError> {
        guard let resolved = Glibc.realpath(path, nil) else { return .failure(FileSystemError("realpath", path: path)) }
        defer { free(resolved) }
        return .success(String(cString: resolved))
    }

    /// Reads the target of a symbolic link.
    public static func readLink(_ path: String) throws(FileSystemError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count >= 0 else { throw FileSystemError("readlink", path: path) }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
