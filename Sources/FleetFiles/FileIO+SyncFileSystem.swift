import CLinux
import Glibc
import SystemPackage

extension FileIO {
    /// `syncfs(2)` of the filesystem holding `path`: every file written there reaches the disk with one flush,
    /// instead of one `fsync` per file (other programs' dirty pages on that filesystem are flushed too).
    public static func syncFileSystem(containing path: String) throws(FileSystemError) {
        let descriptor = try FileSystemError.attempt("open", path: path) { () throws(Errno) in
            try Syscall.open(path, O_RDONLY | O_NOFOLLOW)
        }
        defer { Syscall.close(descriptor) }
        _ = try FileSystemError.attempt("syncfs", path: path) { () throws(Errno) in
            try Syscall.retrying { fleet_syncfs(descriptor.rawValue) }
        }
    }
}
