import Foundation

/// An SSH key pair made with `ssh-keygen`, for host keys and client identities in tests.
public struct KeyPair: Sendable {
    /// The private key file (mode 0600, no passphrase).
    public let privateKeyPath: String
    /// The public key as one OpenSSH line: `ssh-ed25519 AAAA… comment`.
    public let publicKeyLine: String

    /// Generates a key at `path` (and `path.pub`), which must not exist yet.
    ///
    /// - Parameter type: an `ssh-keygen -t` type: `ed25519`, `ecdsa`, `rsa`.
    public static func generate(at path: String, comment: String = "fleet-test", type: String = "ed25519") throws
        -> KeyPair
    {
        try TestCommand.check("/usr/bin/ssh-keygen", ["-q", "-t", type, "-N", "", "-C", comment, "-f", path])
        guard let data = FileManager.default.contents(atPath: path + ".pub") else {
            throw TestSupportError("ssh-keygen wrote no public key at \(path).pub.")
        }
        let line = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return KeyPair(privateKeyPath: path, publicKeyLine: line)
    }

    /// A well-formed ed25519 public key line, different for every `host` and the same on every call, for
    /// fleets that are published but never logged into (no private half exists): fleet refuses to publish a
    /// host without a key.
    public static func publicLine(forHost host: String) -> String {
        var blob: [UInt8] = [0, 0, 0, 11] + Array("ssh-ed25519".utf8) + [0, 0, 0, 32]
        for seed in 0..<4 {
            // FNV-1a, four seeds: 32 bytes that depend on every byte of the name.
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325 &+ UInt64(seed)
            for byte in host.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            blob += (0..<8).map { UInt8(truncatingIfNeeded: hash >> (8 * $0)) }
        }
        return "ssh-ed25519 \(Data(blob).base64EncodedString()) test@\(host)"
    }

    /// The `ssh-keygen -lf` fingerprint of the public key: `SHA256:…`.
    public func fingerprint() throws -> String {
        let output = try TestCommand.check(
            "/usr/bin/ssh-keygen", ["-l", "-E", "sha256", "-f", privateKeyPath + ".pub"])
        let fields = output.standardOutput.split(separator: " ")
        guard fields.count >= 2 else { throw TestSupportError("Unexpected ssh-keygen -l output: \(output).") }
        return String(fields[1])
    }
}
