import Glibc
public import SystemPackage

/// What `lstat(2)` says of a path: the link itself, never what it points to.
public struct FileStatus: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular, directory, symbolicLink, other
    }

    public let kind: Kind
    /// True for a Unix socket (a `.other`), such as the syslog socket in a chroot's `dev/`.
    public let isSocket: Bool
    /// True for a FIFO (a `.other`): opening one to read blocks until a writer comes, unless `O_NONBLOCK`.
    public let isFIFO: Bool
    /// Permission bits only (`0o7777`).
    public let permissions: UInt32
    public let owner: UInt32
    public let group: UInt32
    public let size: Int64
    public let linkCount: UInt64
    public let device: UInt64
    public let inode: UInt64
    public let modificationSeconds: Int64
    public let modificationNanoseconds: Int64
    /// When the inode last changed (contents, mode, owner, links). The kernel sets it; `utimes` cannot.
    public let changeSeconds: Int64
    public let changeNanoseconds: Int64

    init(_ raw: stat) {
        switch raw.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symbolicLink
        default: kind = .other
        }
        isSocket = raw.st_mode & S_IFMT == S_IFSOCK
        isFIFO = raw.st_mode & S_IFMT == S_IFIFO
        permissions = raw.st_mode & 0o7777
        owner = raw.st_uid
        group = raw.st_gid
        size = Int64(raw.st_size)
        linkCount = UInt64(raw.st_nlink)
        device = UInt64(raw.st_dev)
        inode = UInt64(raw.st_ino)
        modificationSeconds = Int64(raw.st_mtim.tv_sec)
        modificationNanoseconds = Int64(raw.st_mtim.tv_nsec)
        changeSeconds = Int64(raw.st_ctim.tv_sec)
        changeNanoseconds = Int64(raw.st_ctim.tv_nsec)
    }

    /// The status of `path` itself (a symbolic link is reported as a link), or nil when nothing is there.
    public static func of(_ path: String) throws(FileSystemError) -> FileStatus? {
        do {
            return FileStatus(try Syscall.status(of: path))
        } catch {
            if error == .noSuchFileOrDirectory { return nil }
            throw FileSystemError("lstat", path: path, code: error)
        }
    }

    /// The status of what `path` resolves to, following links.
    public static func following(_ path: String) throws(FileSystemError) -> FileStatus? {
        do {
            return FileStatus(try Syscall.status(of: path, following: true))
        } catch {
            if error == .noSuchFileOrDirectory { return nil }
            throw FileSystemError("stat", path: path, code: error)
        }
    }

    /// The status of an open file.
    public static func of(descriptor: FileDescriptor, path: String) throws(FileSystemError) -> FileStatus {
        FileStatus(
            try FileSystemError.attempt("fstat", path: path) { () throws(Errno) in
                try Syscall.status(of: descriptor)
            })
    }

    /// The status of an open file (a raw descriptor, for callers not yet on `FileDescriptor`).
    public static func of(descriptor: Int32, path: String) throws(FileSystemError) -> FileStatus {
        try of(descriptor: FileDescriptor(rawValue: descriptor), path: path)
    }

    /// Which version of which file this is, for caches that must not be fooled by an edit.
    public var identity: FileIdentity {
        FileIdentity(
            device: device, inode: inode, size: size, modificationSeconds: modificationSeconds,
            modificationNanoseconds: modificationNanoseconds, changeSeconds: changeSeconds,
            changeNanoseconds: changeNanoseconds)
    }

    /// True when group or others may write: sshd refuses such a component in a chroot path.
    public var isWritableByGroupOrOthers: Bool { permissions & 0o022 != 0 }
}
