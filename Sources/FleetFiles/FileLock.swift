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

    /// Acquires the lock; when `wait` is false and another process holds it, returns nil at once.
    public static func acquire(_ path: String, wait: Bool) throws(FileSystemError) -> FileLock? {
        let descriptor = try FileSystemError.attempt("open lock", path: path) { () throws(Errno) in
            try Syscall.open(path, O_RDWR | O_CREAT | O_NOFOLLOW, mode: 0o600)
        }
        do {
            _ = try Syscall.retrying { flock(descriptor.rawValue, LOCK_EX | (wait ? 0 : LOCK_NB)) }
        } catch {
            Syscall.close(descriptor)
            if error == .wouldBlock { return nil }
            throw FileSystemError("lock", path: path, code: error)
        }
        return FileLock(descriptor: descriptor, path: path)
    }

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

    /// Unlocked before it is closed: a `flock` belongs to the open file, which a child that another thread has
    /// just forked shares until its `exec` closes it (`O_CLOEXEC`), so closing alone would leave the lock held
    /// for that moment, and the next run, publish or overlay change would be told another one holds it.
    deinit {
        _ = flock(descriptor.rawValue, LOCK_UN)
        Syscall.close(descriptor)
    }
}
