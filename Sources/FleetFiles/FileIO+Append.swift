import Glibc

extension FileIO {
    /// Appends `bytes` to the file at `path` (created 0600 when missing), without following a link there: for
    /// logs that grow while something else writes into them too.
    public static func append(_ bytes: [UInt8], to path: String) throws(FileSystemError) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystemError("open", path: path) }
        defer { close(fd) }
        try writeAll(fd: fd, bytes, path: path)
    }
}
