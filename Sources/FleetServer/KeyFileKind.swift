import FleetFiles
import FleetProtocol

/// Flags that take a key file say which half they take; these tell the halves apart so that the wrong one is
/// refused by name instead of producing an sshd that cannot start or a client.toml that pins nothing useful.
enum KeyFileKind {
    /// Why `path` cannot be a host private key for sshd's `HostKey`, or nil. A file that cannot be read here is
    /// let through: the configuration may be written before the key exists, or for another machine.
    static func privateKeyProblem(_ path: String) -> String? {
        if path.hasSuffix(".pub") {
            return "a .pub file is a public key; sshd's HostKey takes the private key (the same path without .pub)"
        }
        guard let bytes = try? FileIO.read(path, limit: 64 << 10) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        if text.contains("PRIVATE KEY-----") { return nil }
        if (try? SSHPublicKey(text)) != nil {
            return "holds a public key; sshd's HostKey takes the private key (the same path without .pub)"
        }
        return "is not a private key (no \"-----BEGIN … PRIVATE KEY-----\" line)"
    }

    /// The public key in `path`, or an error naming the file and saying which half was expected.
    static func publicKey(_ path: String, flag: String) throws -> SSHPublicKey {
        let bytes: [UInt8]
        do { bytes = try FileIO.read(path, limit: 64 << 10) } catch {
            throw CommandFailure("\(flag) \(path): cannot read it: \(error)")
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if text.contains("PRIVATE KEY-----") {
            throw CommandFailure(
                "\(flag) \(path) is a private key; it takes the server's public host key (the same path with .pub, "
                    + "e.g. /etc/ssh/ssh_host_ed25519_key.pub)")
        }
        do { return try SSHPublicKey(text) } catch {
            throw CommandFailure("\(flag) \(path): not a public key: \(error)")
        }
    }
}
