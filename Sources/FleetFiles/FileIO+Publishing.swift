import Glibc
import SystemPackage

/// The file operations the publisher and the `fleet` command need beyond ``FileIO``'s own, so that those modules
/// call no POSIX function themselves: scoped descriptors, streamed reads and durable renames.
extension FileIO {
    /// Runs `body` with `descriptor` and closes it on every path, as swift-system's `closeAfter` does: for a
    /// descriptor from ``openRegularNoFollow(_:)``, whose caller owns it.
    public static func closeAfter<Result, Failure: Error>(
        _ descriptor: Int32, _ body: (Int32) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        defer { Syscall.close(FileDescriptor(rawValue: descriptor)) }
        return try body(descriptor)
    }

    /// Reads an open file from its current offset to its end, handing each chunk to `body` (valid only during
    /// the call), so that a file of any size is read in bounded memory. Interrupted reads are retried.
    public static func forEachChunk(
        of descriptor: Int32, path: String, chunkSize: Int = 256 << 10, _ body: (UnsafeRawBufferPointer) -> Void
    ) throws(FileSystemError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, chunkSize), alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = try FileSystemError.attempt("read", path: path) { () throws(Errno) in
                try Syscall.read(FileDescriptor(rawValue: descriptor), into: buffer)
            }
            if count == 0 { return }
            body(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
    }

    /// Renames `source` over `destination` (atomically, in one filesystem) and makes the rename durable by
    /// syncing the destination's directory: readers see the old file or the new one, and so does a crash.
    public static func renameDurably(_ source: String, to destination: String) throws(FileSystemError) {
        try rename(source, to: destination)
        try syncDirectory(of: destination)
    }

    /// Whether `descriptor` is a terminal, e.g. to draw progress in place only for a person watching.
    public static func isTerminal(_ descriptor: Int32) -> Bool {
        isatty(descriptor) == 1
    }

    /// Whether a file is this process's own: owned by its effective user and writable by no one else, so that
    /// what it holds (a cache of digests, say) was written by this user and can be trusted as much as memory.
    public static func isPrivateToEffectiveUser(_ status: FileStatus) -> Bool {
        status.owner == geteuid() && !status.isWritableByGroupOrOthers
    }
}
