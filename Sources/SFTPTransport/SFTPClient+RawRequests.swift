internal import CLibSSH

/// SFTP v3 requests written straight onto libssh's SFTP channel, several at a time when they do not depend
/// on each other's replies.
///
/// libssh 0.10 waits for each reply before it sends the next request, so over a link with latency every
/// request is a round trip. Reading the manifest (open, fstat, read, close) and replacing the heartbeat (open,
/// write, close, rename) are most of a no-change poll; sent here, they cost two round trips and three
/// instead of four and four, and together (`SFTPClient+Poll.swift`) three. This is safe because this client runs one operation at a time, libssh has no
/// request of its own outstanding between operations, and libssh 0.10 reads each reply exactly (a 4-byte
/// length, then that many bytes), so the channel is at a packet boundary before and after. A reply that does
/// not line up closes the connection rather than leaving libssh to misread it.
extension SFTPClient {
    /// SFTP v3 packet types (draft-ietf-secsh-filexfer-02).
    enum PacketType: UInt8 {
        case open = 3, close = 4, read = 5, write = 6, fstat = 8, extended = 200
        case status = 101, handle = 102, data = 103, attributes = 105
    }

    /// `SSH_FXF_*` open flags.
    static let openRead: UInt32 = 0x01
    static let openWriteCreateTruncate: UInt32 = 0x02 | 0x08 | 0x10
    static let attributesPermissions: UInt32 = 0x04
    static let attributesSize: UInt32 = 0x01

    /// One reply: its type and what follows the request id.
    struct RawReply {
        let type: UInt8
        var reader: RawReader
    }

    /// Sends `requests` (each a packet type and the body after the request id) back to back, then reads one
    /// reply per request and returns them in request order.
    ///
    /// On a new connection SFTP's `INIT` goes first, and its `VERSION` is read first (see
    /// `SFTPClient+Start.swift`): the first requests share the start's round trip.
    func exchange(_ requests: [(PacketType, [UInt8])], operation: String, path: String) throws(SSHError)
        -> [RawReply]
    {
        let channel = try requireChannel(operation, path).channel
        var ids: [UInt32] = []
        var packets: [UInt8] = versionPending ? Self.initPacket : []
        for (type, body) in requests {
            let id = nextRawRequestID()
            ids.append(id)
            var payload: [UInt8] = [type.rawValue]
            payload.appendBigEndian(id)
            payload += body
            packets.appendBigEndian(UInt32(payload.count))
            packets += payload
        }
        let written = packets.withUnsafeBytes { ssh_channel_write(channel, $0.baseAddress, UInt32($0.count)) }
        guard written == packets.count else {
            let failure = versionPending ? transportFailure("start SFTP") : transportFailure(operation, path: path)
            if versionPending {
                startFailure = failure
                close()
            }
            throw failure
        }
        try readVersion()

        var replies: [UInt32: RawReply] = [:]
        while replies.count < ids.count {
            var reader = RawReader(try readPacket(channel, operation: operation, path: path))
            guard let type = reader.byte(), let id = reader.uint32(), ids.contains(id), replies[id] == nil else {
                close()  // the channel no longer lines up with libssh's idea of it
                throw error(.connectionLost, operation, path: path, detail: "the server sent an unexpected reply")
            }
            replies[id] = RawReply(type: type, reader: reader)
            watchdog.progress()
        }
        return ids.map { replies[$0]! }
    }

    /// Throws the error a `STATUS` reply stands for, unless it says OK; any other reply is a protocol error.
    func expectOK(_ reply: RawReply, _ operation: String, path: String) throws(SSHError) {
        guard reply.type == PacketType.status.rawValue else {
            throw unexpected(reply, operation, path: path)
        }
        var reader = reply.reader
        guard let status = reader.uint32() else { throw unexpected(reply, operation, path: path) }
        guard status != UInt32(SSH_FX_OK) else { return }
        throw statusError(status, message: reader.string() ?? "", operation, path: path)
    }

    /// The error of a reply that is a failure status or not of the `wanted` type.
    func refusal(_ reply: RawReply, _ operation: String, path: String) -> SSHError {
        var reader = reply.reader
        if reply.type == PacketType.status.rawValue, let status = reader.uint32(), status != UInt32(SSH_FX_OK) {
            return statusError(status, message: reader.string() ?? "", operation, path: path)
        }
        return unexpected(reply, operation, path: path)
    }

    private func statusError(_ status: UInt32, message: String, _ operation: String, path: String) -> SSHError {
        let (code, phrase) = Self.describe(status: Int(status))
        // OpenSSH's sftp-server has no status for ENOSPC or EDQUOT: a write's plain failure is most likely one.
        let hint =
            operation == "write" && status == UInt32(SSH_FX_FAILURE)
            ? "; the server's disk, or this user's disk quota there, may be full" : ""
        return error(
            code, operation, path: path, detail: "\(phrase) (SFTP status \(status); server: \(message))\(hint)",
            status: Int(status))
    }

    func unexpected(_ reply: RawReply, _ operation: String, path: String) -> SSHError {
        error(.sftpFailure, operation, path: path, detail: "the server answered with SFTP packet type \(reply.type)")
    }

    /// Reads one SFTP packet's payload (after its length) straight from the channel.
    func readPacket(_ channel: ssh_channel?, operation: String, path: String?) throws(SSHError) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 4)
        try readExactly(channel, into: &header, operation: operation, path: path)
        let length = header.reduce(0) { $0 << 8 | Int($1) }
        // A read reply carries at most OpenSSH's 256 KiB and a little framing.
        guard length > 0, length <= (256 << 10) + 64 else {
            close()
            throw error(.connectionLost, operation, path: path, detail: "the server sent a reply of \(length) bytes")
        }
        var payload = [UInt8](repeating: 0, count: length)
        try readExactly(channel, into: &payload, operation: operation, path: path)
        return payload
    }

    private func readExactly(_ channel: ssh_channel?, into buffer: inout [UInt8], operation: String, path: String?)
        throws(SSHError)
    {
        var filled = 0
        while filled < buffer.count {
            let wanted = UInt32(buffer.count - filled)
            let count = buffer.withUnsafeMutableBytes { ssh_channel_read(channel, $0.baseAddress! + filled, wanted, 0) }
            // Zero is end of file (the server closed the channel) or libssh's own timeout. Neither case leaves a
            // fresh SFTP status.
            if count == 0, ssh_channel_is_eof(channel) != 0 {
                throw error(
                    from: watchdog.trip, otherwise: .connectionLost, operation, path: path,
                    detail: "the server closed the SFTP channel")
            }
            guard count > 0 else { throw transportFailure(operation, path: path) }
            filled += Int(count)
        }
    }
}

extension [UInt8] {
    mutating func appendBigEndian(_ value: UInt32) {
        append(contentsOf: [
            UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF),
        ])
    }

    mutating func appendBigEndian(_ value: UInt64) {
        appendBigEndian(UInt32(value >> 32))
        appendBigEndian(UInt32(value & 0xFFFF_FFFF))
    }

    /// An SSH `string`: a 32-bit length, then the bytes.
    mutating func appendString(_ bytes: [UInt8]) {
        appendBigEndian(UInt32(bytes.count))
        append(contentsOf: bytes)
    }
}

/// Reads SSH wire types from a reply; each accessor returns nil once the bytes run out.
struct RawReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func byte() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint32() -> UInt32? {
        guard offset + 4 <= bytes.count else { return nil }
        defer { offset += 4 }
        return bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func uint64() -> UInt64? {
        guard let high = uint32(), let low = uint32() else { return nil }
        return UInt64(high) << 32 | UInt64(low)
    }

    mutating func data() -> [UInt8]? {
        guard let length = uint32().map(Int.init), offset + length <= bytes.count else { return nil }
        defer { offset += length }
        return Array(bytes[offset..<offset + length])
    }

    mutating func string() -> String? {
        data().map { String(decoding: $0, as: UTF8.self) }
    }
}
