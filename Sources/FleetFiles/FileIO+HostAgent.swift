import Glibc
import SystemPackage

/// The file operations the host agent needs beyond the rest of ``FileIO``, so that it makes no POSIX call of its
/// own: each says in its error which call failed on which path, and none follows a link it does not mean to.
extension FileIO {
    /// Sets the owner (without following a link) and the mode of `path`.
    public static func setOwnerAndMode(
        _ path: String, owner: UInt32, group: UInt32, mode: UInt32
    ) throws(FileSystemError) {
        try setOwner(path, owner: owner, group: group)
        try setMode(path, mode)
    }

    /// Reads a regular file from start to end in chunks of `chunkSize` bytes, handing each to `body`, without
    /// following a link at its last component: for files too large to hold in memory, such as snapshots.
    public static func forEachChunk(
        ofFile path: String, chunkSize: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) -> Void
    ) throws(FileSystemError) {
        let (fd, _) = try openRegularNoFollow(path)
        let descriptor = FileDescriptor(rawValue: fd)
        defer { Syscall.close(descriptor) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, chunkSize), alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = try FileSystemError.attempt("read", path: path) { () throws(Errno) in
                try Syscall.read(descriptor, into: buffer)
            }
            if count == 0 { return }
            body(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
    }
}
