internal import CLibSSH

/// OpenSSH's `posix-rename@openssh.com`, which libssh 0.10 lacks.
///
/// libssh 0.10's `sftp_rename` sends the plain SFTP v3 RENAME, which OpenSSH implements with `link` and
/// `unlink` and therefore refuses when the target exists (verified: "SFTP server: Failure", status 4).
/// Replacing a report in place needs POSIX `rename(2)` semantics, so this sends the extended request
/// itself on the SFTP channel and reads the status reply back from it. That is safe because this client
/// runs one operation at a time and libssh 0.10 reads each reply exactly (a 4-byte length, then that many
/// bytes), so the channel is at a packet boundary between operations.
extension SFTPClient {
    private static let posixRename = "posix-rename@openssh.com"
    /// libssh numbers its own requests upward from 1; this id cannot meet one of them.
    private static let posixRenameRequestID: UInt32 = 0xF5E7_0000
    private static let extendedRequest: UInt8 = 200  // SSH_FXP_EXTENDED
    private static let statusReply: UInt8 = 101  // SSH_FXP_STATUS

    /// Renames `source` to `target`, replacing the target atomically when the server supports posix-rename.
    func rename(from source: String, to target: String) throws(SSHError) {
        let sftp = try requireSFTP("rename", source)
        let what = "\(source) to \(target)"
        guard sftp_extension_supported(sftp, Self.posixRename, "1") == 1 else {
            guard sftp_rename(sftp, source, target) == SSH_OK else { throw failure("rename", path: what) }
            return
        }
        var body: [UInt8] = [Self.extendedRequest]
        body.appendBigEndian(Self.posixRenameRequestID)
        body.appendString(Array(Self.posixRename.utf8))
        body.appendString(Array(source.utf8))
        body.appendString(Array(target.utf8))
        var packet: [UInt8] = []
        packet.appendBigEndian(UInt32(body.count))
        packet += body

        let channel = sftp.pointee.channel
        let written = packet.withUnsafeBytes { ssh_channel_write(channel, $0.baseAddress, UInt32($0.count)) }
        guard written == packet.count else { throw transportFailure("rename", path: what) }

        let reply = try readReply(channel, operation: "rename", path: what)
        var reader = ReplyReader(reply)
        guard reader.byte() == Self.statusReply, reader.uint32() == Self.posixRenameRequestID,
            let status = reader.uint32()
        else {
            close()  // the channel no longer lines up with libssh's idea of it
            throw error(.connectionLost, "rename", path: what, detail: "the server sent an unexpected reply")
        }
        guard status != UInt32(SSH_FX_OK) else { return }
        let message = reader.string() ?? ""
        let (code, phrase) = Self.describe(status: Int(status))
        throw error(
            code, "rename", path: what, detail: "\(phrase) (SFTP status \(status); server: \(message))",
            status: Int(status))
    }

    /// Reads one SFTP packet's payload (after its length) straight from the channel.
    private func readReply(_ channel: ssh_channel?, operation: String, path: String) throws(SSHError) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 4)
        try readExactly(channel, into: &header, operation: operation, path: path)
        let length = header.reduce(0) { $0 << 8 | Int($1) }
        guard length > 0, length <= 256 << 10 else {
            close()
            throw error(.connectionLost, operation, path: path, detail: "the server sent a reply of \(length) bytes")
        }
        var payload = [UInt8](repeating: 0, count: length)
        try readExactly(channel, into: &payload, operation: operation, path: path)
        return payload
    }

    private func readExactly(_ channel: ssh_channel?, into buffer: inout [UInt8], operation: String, path: String)
        throws(SSHError)
    {
        var filled = 0
        while filled < buffer.count {
            let wanted = UInt32(buffer.count - filled)
            let count = buffer.withUnsafeMutableBytes { ssh_channel_read(channel, $0.baseAddress! + filled, wanted, 0) }
            // Zero is end of file: the server closed the channel. Neither case leaves a fresh SFTP status.
            guard count > 0 else { throw transportFailure(operation, path: path) }
            filled += Int(count)
        }
    }
}

extension [UInt8] {
    fileprivate mutating func appendBigEndian(_ value: UInt32) {
        append(contentsOf: [
            UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF),
        ])
    }

    /// An SSH `string`: a 32-bit length, then the bytes.
    fileprivate mutating func appendString(_ bytes: [UInt8]) {
        appendBigEndian(UInt32(bytes.count))
        append(contentsOf: bytes)
    }
}

/// Reads SSH wire types from a reply; each accessor returns nil once the bytes run out.
private struct ReplyReader {
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

    mutating func string() -> String? {
        guard let length = uint32().map(Int.init), offset + length <= bytes.count else { return nil }
        defer { offset += length }
        return String(decoding: bytes[offset..<offset + length], as: UTF8.self)
    }
}
