import FleetFiles
public import FleetProtocol

/// The fleet signing key on the server: `<state_dir>/signing.key` (0600) and its public half beside it.
public enum SigningKeyFile {
    public static let secretName = "signing.key"
    public static let publicName = "signing.pub"

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Generates a key unless one exists. Returns the key and whether it was created now.
    public static func generateIfMissing(stateDirectory: String, name: String) throws -> (
        key: SigningKey, created: Bool
    ) {
        let path = stateDirectory + "/" + secretName
        if try FileStatus.of(path) != nil { return (try load(stateDirectory: stateDirectory), false) }
        try FileIO.createDirectories(stateDirectory, mode: 0o755)
        let key = try SigningKey(generatingWithName: name)
        try FileIO.writeAtomically(Array((key.nixFormat + "\n").utf8), to: path, mode: 0o600, owner: 0, group: 0)
        try FileIO.writeAtomically(
            Array((key.publicKey.nixFormat + "\n").utf8), to: stateDirectory + "/" + publicName, mode: 0o644, owner: 0,
            group: 0)
        return (key, true)
    }

    /// Loads the key, refusing one that others can read.
    public static func load(stateDirectory: String) throws -> SigningKey {
        let path = stateDirectory + "/" + secretName
        guard let status = try FileStatus.of(path) else {
            throw Failure(
                description: "no signing key at \(path); create one with `fleet init` (or `fleet init --key-only`)")
        }
        guard status.permissions & 0o077 == 0 else {
            throw Failure(
                description:
                    "signing key \(path) is readable by others (mode \(String(status.permissions, radix: 8))); run `chmod 600 \(path)`"
            )
        }
        let bytes = try FileIO.readNoFollow(path, limit: 4096)
        do {
            return try SigningKey(nixFormat: String(decoding: bytes, as: UTF8.self))
        } catch {
            throw Failure(description: "\(path): \(error)")
        }
    }
}
