import Glibc
import SystemPackage

/// An exclusive `flock(2)` on a file, released when the value is dropped or the process dies.
///
/// Publishes (server) and runs (client) are serialized by one of these; because the kernel drops the
/// lock with the process, a `kill -9` never leaves a stale lock behind. Prefer ``withLock(_:wait:_:)``,
/// whose scope says where the lock ends; ``acquire(_:wait:)`` needs the value kept alive by hand.
public final class FileLock {
    private let descriptor: FileDescriptor
    public let path: String

    /// Acquires the lock; when `wait` is false and another process holds it, returns nil within a quarter second.
    ///
    /// A lock that is not waited for is tried ``busyAttempts`` times, 50 ms apart: a `flock` belongs to the open
    /// file, and a child that another thread of this process has forked shares every descriptor until its
    /// `exec` closes them (`O_CLOEXEC`), so a lock released a moment ago can still look held for that moment.
    public static func acquire(_ path: String, wait: Bool) throws(FileSystemError) -> FileLock? {
        let descriptor = try FileSystemError.attempt("open lock", path: path) { () throws(Errno) in
            try Syscall.open(path, O_RDWR | O_CREAT | O_NOFOLLOW, mode: 0o600)
        }
        var attempt = 1
        while true {
            do {
                _ = try Syscall.retrying { flock(descriptor.rawValue, LOCK_EX | (wait ? 0 : LOCK_NB)) }
                return FileLock(descriptor: descriptor, path: path)
            } catch .wouldBlock where attempt < busyAttempts {
                attempt += 1
                usleep(50_000)
            } catch {
                Syscall.close(descriptor)
                if error == .wouldBlock { return nil }
                throw FileSystemError("lock", path: path, code: error)
            }
        }
    }

    /// How often a lock that is not waited for is tried before it is said to be held by another process.
    static let busyAttempts = 5

    /// Runs `body` holding the lock, which is released when `body` returns or throws (like swift-system's
    /// `closeAfter`). Returns nil without running `body` when `wait` is false and another process holds it.
    ///
    /// - Throws: the ``FileSystemError`` of taking the lock, or what `body` throws.
    public static func withLock<Result>(_ path: String, wait: Bool, _ body: () throws -> Result) throws -> Result? {
        guard let lock = try acquire(path, wait: wait) else { return nil }
        defer { withExtendedLifetime(lock) {} }
        return try body()
    }

    /// The scoped lock for a body that suspends, run in the caller's isolation.
    public static func withLock<Result>(
        _ path: String, wait: Bool, isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> Result
    ) async throws -> Result? {
        guard let lock = try acquire(path, wait: wait) else { return nil }
        defer { withExtendedLifetime(lock) {} }
        return try await body()
    }

    private init(descriptor: FileDescriptor, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { Syscall.close(descriptor) }
}
