import Glibc

/// An exclusive `flock(2)` on a file, released when the value is dropped or the process dies.
///
/// Publishes (server) and runs (client) are serialized by one of these; because the kernel drops the
/// lock with the process, a `kill -9` never leaves a stale lock behind.
public final class FileLock {
    private let fd: Int32
    public let path: String

    /// Acquires the lock; when `wait` is false and another process holds it, returns nil at once.
    public static func acquire(_ path: String, wait: Bool) throws(FileSystemError) -> FileLock? {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw FileSystemError("open lock", path: path) }
        while flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0 {
            if errno == EINTR { continue }
            let failure = errno
            close(fd)
            if failure == EWOULDBLOCK { return nil }
            throw FileSystemError("lock", path: path, errno: failure)
        }
        return FileLock(fd: fd, path: path)
    }

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }
}
