import Glibc

/// The file operations the host agent needs beyond the rest of ``FileIO``, so that it makes no POSIX call of its
/// own: each says in its error which call failed on which path, and none follows a link it does not mean to.
extension FileIO {
    /// Removes a file (or a symbolic link, never its target); a path that is already gone is fine.
    public static func removeFile(_ path: String) throws(FileSystemError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw FileSystemError("unlink", path: path) }
    }

    /// Removes an empty directory.
    public static func removeDirectory(_ path: String) throws(FileSystemError) {
        guard rmdir(path) == 0 else { throw FileSystemError("rmdir", path: path) }
    }

    /// Creates one directory, refusing any existing path (a dangling symbolic link included): what it makes is
    /// new, and so the caller's alone. The error's `errno` is `EEXIST` when the path exists.
    public static func makeDirectory(_ path: String, mode: UInt32) throws(FileSystemError) {
        guard mkdir(path, mode) == 0 else { throw FileSystemError("mkdir", path: path) }
    }

    /// Renames `source` to `target` in one step (rename(2), on one file system: never a copy), replacing a file or
    /// empty directory there.
    public static func move(_ source: String, to target: String) throws(FileSystemError) {
        guard Glibc.rename(source, target) == 0 else { throw FileSystemError("rename", path: "\(source) -> \(target)") }
    }

    /// Points the symbolic link `link` at `target`, atomically: a new link beside it, renamed over it, so a
    /// reader sees the old target or the new one and never no link at all.
    public static func replaceSymlink(_ link: String, pointingTo target: String) throws(FileSystemError) {
        let temporary = temporaryPath(for: link)
        try removeFile(temporary)
        guard symlink(target, temporary) == 0 else { throw FileSystemError("symlink", path: temporary) }
        do throws(FileSystemError) {
            try move(temporary, to: link)
        } catch {
            try? removeFile(temporary)
            throw error
        }
    }

    /// Sets the owner (without following a link) and the mode of `path`.
    public static func setOwnerAndMode(
        _ path: String, owner: UInt32, group: UInt32, mode: UInt32
    ) throws(FileSystemError) {
        guard lchown(path, owner, group) == 0 else { throw FileSystemError("chown", path: path) }
        guard chmod(path, mode) == 0 else { throw FileSystemError("chmod", path: path) }
    }

    /// Whether `path` names a file this process may execute.
    public static func isExecutable(_ path: String) -> Bool {
        access(path, X_OK) == 0
    }

    /// Reads a regular file from start to end in chunks of `chunkSize` bytes, handing each to `body`, without
    /// following a link at its last component: for files too large to hold in memory, such as snapshots.
    public static func forEachChunk(
        ofFile path: String, chunkSize: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) -> Void
    ) throws(FileSystemError) {
        let (fd, _) = try openRegularNoFollow(path)
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: max(1, chunkSize))
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileSystemError("read", path: path)
            }
            if count == 0 { return }
            buffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        }
    }
}
