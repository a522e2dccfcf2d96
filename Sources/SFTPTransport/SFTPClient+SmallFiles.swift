internal import CLibSSH

/// Reading a small file and writing a whole file (the manifest; heartbeats, reports and logs) in as few round
/// trips as the protocol allows (see `SFTPClient+RawRequests.swift` for why they bypass libssh's
/// one-request-at-a-time calls).
extension SFTPClient {
    /// OpenSSH takes writes up to 256 KiB; 32 KiB is what every SFTP server takes.
    static let writeChunk = 32 << 10

    /// Reads a file of at most `limit` bytes in two round trips: `OPEN`, then `FSTAT`, `READ` and `CLOSE` at once.
    ///
    /// - Returns: nil when the one read did not bring exactly the size `FSTAT` reported (a server that answers
    ///   reads short) or the server did not say the file's type: the caller reads it the long way. The handle
    ///   is closed either way.
    func readSmallFile(_ path: String, limit: Int) throws(SSHError) -> [UInt8]? {
        let opened = try exchange([(.open, Self.openForReading(path))], operation: "read", path: path)[0]
        let handle = try self.handle(from: opened, "read", path: path)
        let replies = try exchange(Self.smallReadRequests(handle, limit: limit), operation: "read", path: path)
        return try smallReadResult(replies[...], path, limit: limit)
    }

    /// The body of an `OPEN` for reading.
    static func openForReading(_ path: String) -> [UInt8] {
        var open: [UInt8] = []
        open.appendString(Array(path.utf8))
        open.appendBigEndian(Self.openRead)
        open.appendBigEndian(UInt32(0))  // no attributes
        return open
    }

    /// `FSTAT`, one `READ` of `limit` + 1 bytes (so that a file over the limit shows) and `CLOSE` of a handle.
    static func smallReadRequests(_ handle: [UInt8], limit: Int) -> [(PacketType, [UInt8])] {
        var read = handle
        read.appendBigEndian(UInt64(0))
        read.appendBigEndian(UInt32(limit + 1))
        return [(.fstat, handle), (.read, read), (.close, handle)]
    }

    /// The file the replies to ``smallReadRequests(_:limit:)`` bring, or nil when the caller has to read it the
    /// long way (see ``readSmallFile(_:limit:)``).
    func smallReadResult(_ replies: ArraySlice<RawReply>, _ path: String, limit: Int) throws(SSHError) -> [UInt8]? {
        let stat = replies[replies.startIndex]
        let read = replies[replies.startIndex + 1]
        guard stat.type == PacketType.attributes.rawValue else { throw refusal(stat, "read", path: path) }
        var attributes = stat.reader
        guard let (kind, size) = Self.kindAndSize(&attributes) else {
            throw error(.sftpFailure, "read", path: path, detail: "the server sent attributes it cannot be read from")
        }
        // Without permissions the type is unknown here; libssh's reading works it out another way.
        guard let kind else { return nil }
        guard kind == 0o100_000 else {
            throw error(.sftpFailure, "read", path: path, detail: "it is not a regular file")
        }
        guard let size else {
            throw error(.sftpFailure, "read", path: path, detail: "the server did not report its size")
        }
        guard size <= UInt64(limit) else {
            throw error(.limitExceeded, "read", path: path, detail: "it is \(size) bytes, over the limit of \(limit)")
        }
        let bytes: [UInt8]
        var data = read.reader
        if read.type == PacketType.data.rawValue, let received = data.data() {
            guard received.count <= limit + 1 else {
                throw error(
                    .sftpFailure, "read", path: path,
                    detail: "the server sent \(received.count) bytes where at most \(limit + 1) were asked for")
            }
            bytes = received
        } else {
            var status = read.reader
            guard read.type == PacketType.status.rawValue, status.uint32() == UInt32(SSH_FX_EOF) else {
                throw refusal(read, "read", path: path)
            }
            bytes = []
        }
        // The close of a read-only handle has nothing to report that matters to the caller.
        return UInt64(bytes.count) == size ? bytes : nil
    }

    /// Writes `bytes` to `temporary` and renames it over `path` in three round trips: `OPEN`; every `WRITE` and
    /// the `CLOSE` at once; then the rename, sent only once all of them succeeded (so a failed write never
    /// replaces `path`).
    func replaceFile(_ path: String, with bytes: [UInt8], through temporary: String) throws(SSHError) {
        try writeFile(temporary, bytes: bytes)
        try rename(from: temporary, to: path)
    }

    /// Creates or truncates `path` (mode 0640 before the server's umask) and writes `bytes` to it in two round
    /// trips: `OPEN`, then every `WRITE` and the `CLOSE` at once.
    func writeFile(_ path: String, bytes: [UInt8]) throws(SSHError) {
        let opened = try exchange([(.open, Self.openForWriting(path))], operation: "write", path: path)[0]
        let handle = try self.handle(from: opened, "write", path: path)
        let replies = try exchange(Self.writeRequests(handle, bytes), operation: "write", path: path)
        for reply in replies { try expectOK(reply, "write", path: path) }
    }

    /// The body of an `OPEN` that creates or truncates a file for writing, mode 0640 before the server's umask.
    static func openForWriting(_ path: String) -> [UInt8] {
        var open: [UInt8] = []
        open.appendString(Array(path.utf8))
        open.appendBigEndian(Self.openWriteCreateTruncate)
        open.appendBigEndian(Self.attributesPermissions)
        open.appendBigEndian(UInt32(0o640))  // less the server's umask
        return open
    }

    /// Every `WRITE` of `bytes` (in ``writeChunk`` pieces) and the `CLOSE` of a handle.
    static func writeRequests(_ handle: [UInt8], _ bytes: [UInt8]) -> [(PacketType, [UInt8])] {
        var requests: [(PacketType, [UInt8])] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + writeChunk, bytes.count)
            var write = handle
            write.appendBigEndian(UInt64(offset))
            write.appendString(Array(bytes[offset..<end]))
            requests.append((.write, write))
            offset = end
        }
        requests.append((.close, handle))
        return requests
    }

    /// The handle an `OPEN` reply brings, as an SSH string ready to start the next requests' bodies.
    func handle(from reply: RawReply, _ operation: String, path: String) throws(SSHError) -> [UInt8] {
        var reader = reply.reader
        guard reply.type == PacketType.handle.rawValue, let handle = reader.data() else {
            throw refusal(reply, operation, path: path)
        }
        // OpenSSH's handles are 4 bytes; the protocol allows 256.
        guard handle.count <= 256 else {
            let detail = "the server sent a handle of \(handle.count) bytes"
            throw error(.sftpFailure, operation, path: path, detail: detail)
        }
        var field: [UInt8] = []
        field.appendString(handle)
        return field
    }

    /// The file type bits and the size from an `ATTRS` body, or nil when it is cut short.
    static func kindAndSize(_ reader: inout RawReader) -> (kind: UInt32?, size: UInt64?)? {
        guard let flags = reader.uint32() else { return nil }
        var size: UInt64?
        if flags & attributesSize != 0 {
            guard let value = reader.uint64() else { return nil }
            size = value
        }
        if flags & 0x02 != 0 {  // SSH_FILEXFER_ATTR_UIDGID
            guard reader.uint32() != nil, reader.uint32() != nil else { return nil }
        }
        guard flags & attributesPermissions != 0 else { return (nil, size) }
        guard let permissions = reader.uint32() else { return nil }
        return (permissions & 0o170_000, size)
    }
}
