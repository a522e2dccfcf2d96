import Glibc
import SystemPackage

extension FileIO {
    /// Writes `header` followed by the bytes of the regular file `source` as the new file `path`, atomically (a
    /// temporary name beside it, then a rename) but not durably: the caller makes many such files durable at
    /// once (``syncFileSystem(containing:)``). The binary-cache pool makes each store path's one file (its
    /// narinfo, then its NAR) this way. `source` is opened without following a link and without blocking on a
    /// FIFO.
    ///
    /// - Returns: the bytes copied from `source`.
    @discardableResult
    public static func writeConcatenation(
        header: [UInt8], thenContentsOf source: String, to path: String, mode: UInt32, owner: UInt32, group: UInt32
    ) throws(FileSystemError) -> Int64 {
        let input = try FileSystemError.attempt("open", path: source) { () throws(Errno) in
            try Syscall.open(source, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        }
        defer { Syscall.close(input) }
        let status = try FileSystemError.attempt("fstat", path: source) { () throws(Errno) in
            try Syscall.status(of: input)
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw FileSystemError("open", path: source, errno: EINVAL, detail: "is not a regular file")
        }
        let temporary = temporaryPath(for: path)
        _ = try? removeFile(temporary)
        let output = try FileSystemError.attempt("create", path: temporary) { () throws(Errno) in
            try Syscall.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode)
        }
        var copied: Int64 = 0
        do throws(FileSystemError) {
            defer { Syscall.close(output) }
            try writeAll(output, header, path: temporary)
            try forEachChunk(of: input, path: source, chunkSize: 1 << 20) { chunk throws(FileSystemError) in
                try writeAll(output, chunk, path: temporary)
                copied += Int64(chunk.count)
            }
            try setOwnership(output, path: temporary, mode: mode, owner: owner, group: group)
        } catch {
            _ = try? removeFile(temporary)
            throw error
        }
        do throws(FileSystemError) {
            try rename(temporary, to: path)
        } catch {
            _ = try? removeFile(temporary)
            throw error
        }
        return copied
    }
}
