import Foundation

/// An OpenSSH public key line (`type base64 [comment]`), checked for shape so that a typo in fleet.toml
/// is caught at publish time rather than as a silent login failure on the host.
///
/// A value holds exactly one key: it becomes one line of an authorized keys file, so a second line (another
/// host's key, say, from `cat a.pub b.pub`) would let that key log in as this host. Anything after the key
/// data but a single comment without control characters is refused.
public struct SSHPublicKey: Sendable, Equatable, CustomStringConvertible {
    public static let supportedTypes = [
        "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
        "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
    ]
    /// Longer than any key line OpenSSH writes (an 16384-bit RSA key is about 2.8 KB of base64).
    public static let lineLimit = 16 << 10

    public let type: String
    /// The base64 key blob, which identifies the key (the comment does not).
    public let blob: String
    public let comment: String

    /// Parses one key line. A single line break at the end (as a `.pub` file has) is allowed; any other line
    /// break, and any control character in the comment, is refused.
    public init(_ text: String) throws(ProtocolError) {
        // By scalars: "\r\n" is one Character, so dropping Characters would cut into the comment.
        var scalars = Substring(text).unicodeScalars
        if scalars.last == "\n" { scalars.removeLast() }
        if scalars.last == "\r" { scalars.removeLast() }
        let line = Substring(scalars)
        guard line.utf8.count <= Self.lineLimit else {
            throw .malformedKey("\(line.utf8.count) bytes, more than a public key line (\(Self.lineLimit) at most)")
        }
        guard !line.contains(where: { $0.isNewline }) else {
            throw .malformedKey(
                "holds more than one line; give exactly one key (one line \"TYPE BASE64 [COMMENT]\"): a second line would be a second key allowed to log in as this host"
            )
        }
        // OpenSSH separates the fields by spaces or tabs.
        let isSeparator: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        let trimmed = line.drop(while: isSeparator)
        let fields = trimmed.split(maxSplits: 2, omittingEmptySubsequences: true, whereSeparator: isSeparator)
        guard fields.count >= 2 else {
            throw .malformedKey(
                "expected \"TYPE BASE64 [COMMENT]\", e.g. the contents of /etc/ssh/ssh_host_ed25519_key.pub")
        }
        let type = String(fields[0])
        guard Self.supportedTypes.contains(type) else {
            throw .malformedKey(
                "key type \(quoted(type)) is not supported (use one of \(Self.supportedTypes.joined(separator: ", ")))")
        }
        guard let bytes = Data(base64Encoded: String(fields[1])), bytes.count >= 4 else {
            throw .malformedKey("the \(type) key's data is not valid base64")
        }
        // The blob starts with the key type as an SSH string: uint32 length, then the name.
        let length = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
        guard length <= bytes.count - 4, String(decoding: bytes[4..<(4 + length)], as: UTF8.self) == type else {
            throw .malformedKey("the key data does not hold a \(type) key (truncated, or the type does not match)")
        }
        if type == "ssh-ed25519" && bytes.count != 51 {
            throw .malformedKey("the ssh-ed25519 key data has \(bytes.count) bytes, expected 51 (truncated?)")
        }
        var comment = fields.count > 2 ? String(fields[2].drop(while: isSeparator)) : ""
        while let last = comment.last, isSeparator(last) { comment.removeLast() }
        if let control = comment.unicodeScalars.first(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            throw .malformedKey(
                "the comment \(quoted(comment)) holds a control character (U+\(String(format: "%04X", control.value)))")
        }
        self.type = type
        self.blob = String(fields[1])
        self.comment = comment
    }

    /// Reads a `.pub` file's bytes: refuses what is not text before parsing it as one key line.
    public init(fileContents bytes: [UInt8]) throws(ProtocolError) {
        guard bytes.count <= Self.lineLimit + 2 else {
            throw .malformedKey("not a public key: \(bytes.count) bytes, more than one key line")
        }
        guard let text = String(validating: bytes, as: UTF8.self), !bytes.contains(0) else {
            throw .malformedKey(
                "not a public key: the file is binary, not text (a private key or another file? give the .pub file)")
        }
        try self.init(text)
    }

    /// `type base64 comment`, as an authorized_keys line.
    public var description: String { comment.isEmpty ? "\(type) \(blob)" : "\(type) \(blob) \(comment)" }

    /// The authorized keys line for this key with `options` (e.g. `restrict`), checked once more: it parses
    /// back to this same key and holds no line break, so what is written is exactly one key.
    public func authorizedKeysLine(options: String) throws(ProtocolError) -> String {
        let line = "\(options) \(description)"
        let reparsed = try SSHPublicKey(description)
        guard reparsed == self, reparsed.comment == comment, !line.contains(where: { $0.isNewline }),
            !options.contains(where: { $0 == " " || $0 == "\t" || $0.isNewline })
        else {
            throw .malformedKey(
                "refusing to write an authorized keys line that is not exactly one key: \(quoted(line))")
        }
        return line + "\n"
    }

    public static func == (lhs: SSHPublicKey, rhs: SSHPublicKey) -> Bool {
        lhs.type == rhs.type && lhs.blob == rhs.blob
    }
}
