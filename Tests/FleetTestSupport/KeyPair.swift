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

    /// The `ssh-keygen -lf` fingerprint of the public key: `SHA256:…`.
    public func fingerprint() throws -> String {
        let output = try TestCommand.check(
            "/usr/bin/ssh-keygen", ["-l", "-E", "sha256", "-f", privateKeyPath + ".pub"])
        let fields = output.standardOutput.split(separator: " ")
        guard fields.count >= 2 else { throw TestSupportError("Unexpected ssh-keygen -l output: \(output).") }
        return String(fields[1])
    }
}
