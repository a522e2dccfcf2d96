internal import CLibSSH

/// An owned libssh public key, freed with its owner; used for pinning and fingerprints.
final class PublicKey {
    let handle: OpaquePointer
    /// The OpenSSH type name, such as `ssh-ed25519` or `ecdsa-sha2-nistp256`.
    let typeName: String

    /// Takes ownership of a key libssh handed out (for example the server's key).
    init(owning handle: OpaquePointer) {
        self.handle = handle
        self.typeName = ssh_key_type_to_char(ssh_key_type(handle)).map { String(cString: $0) } ?? "unknown"
    }

    /// Parses one OpenSSH public key line: `type base64 [comment]`.
    convenience init(line: String, endpoint: SSHEndpoint) throws(SSHError) {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" })
        func invalid(_ why: String) -> SSHError {
            SSHError(
                .invalidConfiguration, "use the pinned host key", server: endpoint.server, user: endpoint.user,
                detail: why)
        }
        guard fields.count >= 2 else {
            throw invalid("the pinned host key must be one OpenSSH public key line, \"type base64 [comment]\"")
        }
        let type = ssh_key_type_from_name(String(fields[0]))
        guard type != SSH_KEYTYPE_UNKNOWN else { throw invalid("unknown key type \"\(fields[0])\"") }
        var key: OpaquePointer?
        guard ssh_pki_import_pubkey_base64(String(fields[1]), type, &key) == SSH_OK, let key else {
            throw invalid("the base64 part of the \(fields[0]) key does not decode")
        }
        self.init(owning: key)
    }

    deinit { ssh_key_free(handle) }

    /// True when both are the same public key.
    func matches(_ other: PublicKey) -> Bool {
        ssh_key_cmp(handle, other.handle, SSH_KEY_CMP_PUBLIC) == 0
    }

    /// The `ssh-keygen -lf` fingerprint: "SHA256:" and unpadded base64 of the key blob's SHA-256.
    func fingerprint(endpoint: SSHEndpoint) throws(SSHError) -> String {
        var hash: UnsafeMutablePointer<UInt8>?
        var length = 0
        guard ssh_get_publickey_hash(handle, SSH_PUBLICKEY_HASH_SHA256, &hash, &length) == SSH_OK, let hash else {
            throw SSHError(
                .invalidConfiguration, "fingerprint a host key", server: endpoint.server, user: endpoint.user,
                detail: "libssh could not hash the \(typeName) key")
        }
        var pointer: UnsafeMutablePointer<UInt8>? = hash
        defer { ssh_clean_pubkey_hash(&pointer) }
        return "SHA256:" + Base64.encodeUnpadded(UnsafeBufferPointer(start: hash, count: length))
    }

    /// The host key algorithms that make a server present this key rather than another of its keys.
    var hostKeyAlgorithms: String {
        // An RSA key is offered under the SHA-2 signature names; the rest use their key type name.
        typeName == "ssh-rsa" ? "rsa-sha2-512,rsa-sha2-256" : typeName
    }
}

/// Base64 (RFC 4648) without padding, as OpenSSH prints fingerprints.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encodeUnpadded(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index < bytes.count {
            let remaining = bytes.count - index
            let b0 = UInt32(bytes[index])
            let b1 = remaining > 1 ? UInt32(bytes[index + 1]) : 0
            let b2 = remaining > 2 ? UInt32(bytes[index + 2]) : 0
            let triple = b0 << 16 | b1 << 8 | b2
            output.append(alphabet[Int(triple >> 18 & 63)])
            output.append(alphabet[Int(triple >> 12 & 63)])
            if remaining > 1 { output.append(alphabet[Int(triple >> 6 & 63)]) }
            if remaining > 2 { output.append(alphabet[Int(triple & 63)]) }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }
}
