import Glibc
import SystemPackage

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

extension FileIO {
    /// The first `bytes` of the file at `path` (fewer when it is shorter), following links: the start of a log.
    public static func readHead(of path: String, bytes: Int) throws(FileSystemError) -> [UInt8] {
        let descriptor = try FileSystemError.attempt("open", path: path) { () throws(Errno) in
            try Syscall.open(path, O_RDONLY)
        }
        defer { Syscall.close(descriptor) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, bytes), alignment: 16)
        defer { buffer.deallocate() }
        var filled = 0
        while filled < bytes {
            let count = try FileSystemError.attempt("read", path: path) { () throws(Errno) in
                try Syscall.read(descriptor, into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
            }
            if count == 0 { break }
            filled += count
        }
        return Array(UnsafeRawBufferPointer(rebasing: buffer[..<filled]))
    }
}
