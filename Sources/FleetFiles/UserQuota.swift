import CLinux
import Glibc
import SystemPackage

/// A Unix user's disk quota on one filesystem: the kernel's own cap on what the user's files may take (hard
/// limits only: past them a write fails with `EDQUOT`, at once, with no grace period to run out).
///
/// fleet uses it on the chroots' filesystem, where a host's user owns only its `logs/`: so a host that uploads
/// without end fills its own quota, not the disk the other hosts and the server's state live on.
public struct UserQuota: Sendable, Equatable, Codable {
    /// At most this many bytes (rounded up to the kernel's 1 KiB quota block); 0 = no limit.
    public var byteLimit: UInt64
    /// At most this many files and directories; 0 = no limit.
    public var inodeLimit: UInt64
    public var bytesUsed: UInt64 = 0
    public var inodesUsed: UInt64 = 0

    public init(byteLimit: UInt64, inodeLimit: UInt64, bytesUsed: UInt64 = 0, inodesUsed: UInt64 = 0) {
        self.byteLimit = byteLimit
        self.inodeLimit = inodeLimit
        self.bytesUsed = bytesUsed
        self.inodesUsed = inodesUsed
    }

    /// Whether user quotas are counted and enforced on a filesystem.
    public struct State: Sendable, Equatable {
        /// The kernel counts each user's blocks and inodes (ext4's `quota` feature, xfs's `uqnoenforce`).
        public var accounting: Bool
        /// Writes past a hard limit fail (ext4 and xfs mounted with `usrquota`).
        public var enforcing: Bool
    }

    /// The largest byte limit fleet sets (1 PiB): far beyond any disk of logs, and far from overflowing the
    /// kernel's block count.
    public static let largestByteLimit: UInt64 = 1 << 50

    /// Whether user quotas are on for the filesystem holding `path` (a directory).
    ///
    /// - Throws: `FileSystemError` with the kernel's reason: `ENOSYS` for a filesystem without quota support
    ///   (or a kernel older than 5.14), `ESRCH` for quotas not turned on.
    public static func state(ofFilesystemAt path: String) throws(FileSystemError) -> State {
        try withDirectory(path) { descriptor throws(FileSystemError) in
            var accounting: Int32 = 0
            var enforcing: Int32 = 0
            try check("read the quota state of the filesystem of", path) {
                fleet_user_quota_state(descriptor.rawValue, &accounting, &enforcing)
            }
            return State(accounting: accounting != 0, enforcing: enforcing != 0)
        }
    }

    /// The quota of `uid` on the filesystem holding `path`: its limits and what it uses.
    public static func of(uid: UInt32, onFilesystemAt path: String) throws(FileSystemError) -> UserQuota {
        try withDirectory(path) { descriptor throws(FileSystemError) in
            var quota = UserQuota(byteLimit: 0, inodeLimit: 0)
            try check("read the quota of uid \(uid) on the filesystem of", path) {
                fleet_user_quota_get(
                    descriptor.rawValue, uid, &quota.byteLimit, &quota.inodeLimit, &quota.bytesUsed, &quota.inodesUsed)
            }
            return quota
        }
    }

    /// Sets the hard limits of `uid` on the filesystem holding `path` (0 = none) and clears its soft limits.
    public static func set(
        uid: UInt32, byteLimit: UInt64, inodeLimit: UInt64, onFilesystemAt path: String
    ) throws(FileSystemError) {
        guard byteLimit <= largestByteLimit else {
            throw FileSystemError(
                "set the quota of uid \(uid) on the filesystem of", path: path, errno: EINVAL,
                detail: "\(byteLimit) bytes is more than the largest limit fleet sets, \(largestByteLimit)")
        }
        try withDirectory(path) { descriptor throws(FileSystemError) in
            try check("set the quota of uid \(uid) on the filesystem of", path) {
                fleet_user_quota_set(descriptor.rawValue, uid, byteLimit, inodeLimit)
            }
        }
    }

    private static func withDirectory<Result>(
        _ path: String, _ body: (FileDescriptor) throws(FileSystemError) -> Result
    ) throws(FileSystemError) -> Result {
        let descriptor = try FileSystemError.attempt("open", path: path) { () throws(Errno) in
            try Syscall.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        }
        defer { Syscall.close(descriptor) }
        return try body(descriptor)
    }

    private static func check(_ operation: String, _ path: String, _ call: () -> Int32) throws(FileSystemError) {
        _ = try FileSystemError.attempt(operation, path: path) { () throws(Errno) in try Syscall.retrying(call) }
    }
}
