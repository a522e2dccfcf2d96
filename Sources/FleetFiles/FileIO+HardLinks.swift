import Glibc
import SystemPackage

extension FileIO {
    /// Gives the file at `existing` a second name, `newPath` (`link(2)`; a symbolic link at `existing` is linked
    /// itself, never followed). Both names must be on one filesystem: across two it fails with `EXDEV` and never
    /// falls back to a copy, so a caller that counts on sharing one inode learns that it cannot.
    public static func hardLink(_ existing: String, at newPath: String) throws(FileSystemError) {
        _ = try FileSystemError.attempt("link", path: "\(existing) -> \(newPath)") { () throws(Errno) in
            try Syscall.retrying { linkat(AT_FDCWD, existing, AT_FDCWD, newPath, 0) }
        }
    }
}
