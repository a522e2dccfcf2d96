import Foundation

/// An OpenSSH public key line (`type base64 [comment]`), checked for shape so that a typo in fleet.toml
/// is caught at publish time rather than as a silent login failure on the host.
public struct SSHPublicKey: Sendable, Equatable, CustomStringConvertible {
    public static let supportedTypes = [
        "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
        "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
    ]

    public let type: String
    /// The base64 key blob, which identifies the key (the comment does not).
    public let blob: String
    public let comment: String

    public init(_ line: String) throws(ProtocolError) {
        let fields = line.trimmingCharacters(in: .whitespacesAndNewlines).split(
            separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
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
        self.type = type
        self.blob = String(fields[1])
        self.comment = fields.count > 2 ? String(fields[2]) : ""
    }

    /// `type base64 comment`, as an authorized_keys line.
    public var description: String { comment.isEmpty ? "\(type) \(blob)" : "\(type) \(blob) \(comment)" }

    public static func == (lhs: SSHPublicKey, rhs: SSHPublicKey) -> Bool {
        lhs.type == rhs.type && lhs.blob == rhs.blob
    }
}
