internal import CLibSSH
import Glibc

/// Whole-file reads with several requests in flight.
extension SFTPClient {
    func readFile(_ path: String, limit: Int) throws(SSHError) -> [UInt8] {
        // A file that fits one read request (a manifest) takes two round trips instead of four.
        if limit < Int(readRequestSize), let bytes = try readSmallFile(path, limit: limit) { return bytes }
        return try readFileWithLibSSH(path, limit: limit)
    }

    /// Reads a whole file through libssh's calls: open, fstat, reads in flight, close (four round trips or more).
    func readFileWithLibSSH(_ path: String, limit: Int) throws(SSHError) -> [UInt8] {
        let file = try open(path, "read", flags: O_RDONLY)
        defer { sftp_close(file) }
        let size = try size(of: file, path, "read")
        guard size <= limit else {
            throw error(.limitExceeded, "read", path: path, detail: "it is \(size) bytes, over the limit of \(limit)")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(Int(size), 1), alignment: 1)
        defer { buffer.deallocate() }
        try readPipelined(file, path, "read", size: size, progress: nil) { offset, chunk in
            UnsafeMutableRawBufferPointer(rebasing: buffer[Int(offset)..<Int(offset) + chunk.count])
                .copyMemory(from: chunk)
        }
        return [UInt8](buffer[0..<Int(size)])
    }

    func download(
        _ remotePath: String, to localPath: String, expectedSize: Int64?, limit: Int64,
        progress: (@Sendable (Int64) -> Void)?
    ) throws(SSHError) {
        let file = try open(remotePath, "download", flags: O_RDONLY)
        defer { sftp_close(file) }
        let size = try size(of: file, remotePath, "download")
        if let expectedSize, size != expectedSize {
            throw error(
                .limitExceeded, "download", path: remotePath,
                detail: "it is \(size) bytes, but \(expectedSize) were expected")
        }
        guard size <= limit else {
            throw error(
                .limitExceeded, "download", path: remotePath, detail: "it is \(size) bytes, over the limit of \(limit)")
        }
        var descriptor = Glibc.open(localPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw localError("create", localPath) }
        var isComplete = false
        defer {
            if descriptor >= 0 { Glibc.close(descriptor) }
            if !isComplete { unlink(localPath) }
        }
        try readPipelined(file, remotePath, "download", size: size, progress: progress) {
            offset, chunk throws(SSHError) in
            var written = 0
            while written < chunk.count {
                let count = pwrite(
                    descriptor, chunk.baseAddress! + written, chunk.count - written, off_t(offset) + off_t(written))
                if count < 0 {
                    if errno == EINTR { continue }
                    throw localError("write", localPath)
                }
                written += count
            }
        }
        guard fsync(descriptor) == 0 else { throw localError("flush", localPath) }
        let closed = Glibc.close(descriptor)
        descriptor = -1
        guard closed == 0 else { throw localError("close", localPath) }
        isComplete = true
    }

    /// Reads are split in requests of OpenSSH's largest read (256 KiB less 1 KiB; a server with a lower limit
    /// answers short, which costs a follow-up request but stays correct)...
    static let defaultReadRequestSize: UInt32 = 255 << 10
    /// ...with this many in flight: about 4 MiB, enough to fill a fast link's window (measured on loopback:
    /// 64 KiB × 16 gave 335 MB/s, 255 KiB × 8 gave 360 MB/s, 255 KiB × 16 gave 480–630 MB/s).
    private static let readDepth = 16

    private struct ReadRequest {
        let id: UInt32
        let offset: Int64
        let length: UInt32
    }

    /// Reads `[0, size)` of an open file with several requests in flight, handing each chunk to `sink`.
    ///
    /// libssh 0.10 rewinds the shared file offset after a short reply, which corrupts later requests, so
    /// every request seeks to its own offset first, and a short reply becomes a new request for the rest.
    private func readPipelined(
        _ file: sftp_file, _ path: String, _ operation: String, size: Int64, progress: (@Sendable (Int64) -> Void)?,
        sink: (Int64, UnsafeRawBufferPointer) throws(SSHError) -> Void
    ) throws(SSHError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(readRequestSize), alignment: 16)
        defer { buffer.deallocate() }
        var inFlight: [ReadRequest] = []
        var retries: [(offset: Int64, length: UInt32)] = []
        var nextOffset: Int64 = 0
        var done: Int64 = 0

        func nextRange() -> (offset: Int64, length: UInt32)? {
            if !retries.isEmpty { return retries.removeLast() }
            guard nextOffset < size else { return nil }
            let length = UInt32(min(Int64(readRequestSize), size - nextOffset))
            defer { nextOffset += Int64(length) }
            return (nextOffset, length)
        }

        do throws(SSHError) {
            while true {
                while inFlight.count < Self.readDepth, let range = nextRange() {
                    sftp_seek64(file, UInt64(range.offset))
                    let id = sftp_async_read_begin(file, range.length)
                    guard id >= 0 else { throw failure(operation, path: path) }
                    inFlight.append(ReadRequest(id: UInt32(id), offset: range.offset, length: range.length))
                }
                guard !inFlight.isEmpty else { break }
                let request = inFlight.removeFirst()
                let count = sftp_async_read(file, buffer.baseAddress, request.length, request.id)
                if count < 0 { throw failure(operation, path: path) }
                if count == 0 {
                    throw error(
                        .sftpFailure, operation, path: path,
                        detail: "the file ended at byte \(request.offset), before its size of \(size) bytes")
                }
                watchdog.progress()
                try sink(request.offset, UnsafeRawBufferPointer(rebasing: buffer[0..<Int(count)]))
                if UInt32(count) < request.length {
                    retries.append((request.offset + Int64(count), request.length - UInt32(count)))
                }
                done += Int64(count)
                progress?(done)
            }
        } catch {
            if error.code != .connectionLost, error.code != .timeout, watchdog.trip == nil {
                drain(file, inFlight, into: buffer)
            }
            throw error
        }
    }

    /// Collects the replies of abandoned requests so they do not linger in the session's queue.
    private func drain(_ file: sftp_file, _ requests: [ReadRequest], into buffer: UnsafeMutableRawBufferPointer) {
        for request in requests {
            sftp_seek64(file, 0)  // clears libssh's end-of-file flag, which would skip the reply
            if sftp_async_read(file, buffer.baseAddress, request.length, request.id) == SSH_ERROR,
                ssh_get_error_code(UnsafeMutableRawPointer(session)) == SSH_FATAL.rawValue
            {
                return
            }
        }
    }
}
