import Crypto
import Foundation

/// The fleet's ed25519 secret key, in Nix's format `name:base64(seed ‖ public key)`.
///
/// Nix binary caches use the same format, so one key signs both manifests and caches
/// (`nix key convert-secret-to-public` accepts it).
public struct SigningKey: Sendable {
    public let name: String
    /// The 32-byte seed; swift-crypto's key type is not Sendable, so it is rebuilt on use.
    private let seed: [UInt8]
    private var privateKey: Curve25519.Signing.PrivateKey {
        // The seed was validated when this value was made, so this cannot fail.
        guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else {
            preconditionFailure("a validated ed25519 seed was rejected")
        }
        return key
    }

    /// Generates a new key named `name` (e.g. `fleet.example.org-1`).
    public init(generatingWithName name: String) throws(ProtocolError) {
        try Self.checkName(name)
        self.name = name
        self.seed = Array(Curve25519.Signing.PrivateKey().rawRepresentation)
    }

    /// Parses the Nix secret key format.
    public init(nixFormat text: String) throws(ProtocolError) {
        let (name, bytes) = try Self.split(text.trimmingCharacters(in: .whitespacesAndNewlines))
        guard bytes.count == 64 else {
            throw .malformedKey("secret key \(quoted(name)) holds \(bytes.count) bytes, expected 64")
        }
        guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: bytes.prefix(32)) else {
            throw .malformedKey("secret key \(quoted(name)) is not an ed25519 key")
        }
        guard key.publicKey.rawRepresentation == bytes.suffix(32) else {
            throw .malformedKey("secret key \(quoted(name)): its public half does not match its seed")
        }
        self.name = name
        self.seed = Array(key.rawRepresentation)
    }

    /// `name:base64(seed ‖ public key)`.
    public var nixFormat: String {
        name + ":" + (privateKey.rawRepresentation + privateKey.publicKey.rawRepresentation).base64EncodedString()
    }

    public var publicKey: VerifyingKey {
        VerifyingKey(name: name, bytes: Array(privateKey.publicKey.rawRepresentation))
    }

    /// Signs `payload`, returning `name:base64(signature)` as Nix writes signatures.
    public func sign(_ payload: [UInt8]) throws -> String {
        name + ":" + (try privateKey.signature(for: payload)).base64EncodedString()
    }

    static func checkName(_ name: String) throws(ProtocolError) {
        guard !name.isEmpty, !name.contains(":"), name.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw .malformedKey("key name \(quoted(name)) must be non-empty ASCII without spaces or ':'")
        }
    }

    static func split(_ text: String) throws(ProtocolError) -> (String, Data) {
        guard let colon = text.firstIndex(of: ":") else {
            throw .malformedKey("expected \"name:base64\", found no ':'")
        }
        let name = String(text[..<colon])
        try checkName(name)
        guard let bytes = Data(base64Encoded: String(text[text.index(after: colon)...])) else {
            throw .malformedKey("key \(quoted(name)) is not valid base64 after the ':'")
        }
        return (name, bytes)
    }
}

/// A fleet public key, `name:base64(32 bytes)`, as Nix's `trusted-public-keys` lists them.
public struct VerifyingKey: Sendable, Equatable {
    public let name: String
    /// The 32 raw key bytes (swift-crypto's key type is not Sendable).
    private let bytes: [UInt8]

    init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }

    public init(nixFormat text: String) throws(ProtocolError) {
        let (name, bytes) = try SigningKey.split(text.trimmingCharacters(in: .whitespacesAndNewlines))
        guard bytes.count == 32, (try? Curve25519.Signing.PublicKey(rawRepresentation: bytes)) != nil else {
            throw .malformedKey("public key \(quoted(name)) must hold 32 bytes of ed25519 key")
        }
        self.name = name
        self.bytes = Array(bytes)
    }

    public var nixFormat: String { name + ":" + Data(bytes).base64EncodedString() }

    /// Checks a `name:base64(signature)` over `payload`.
    public func verify(signature: String, of payload: [UInt8]) throws(ProtocolError) {
        guard let colon = signature.firstIndex(of: ":") else {
            throw .malformedManifest("signature line is not \"name:base64\"")
        }
        let signer = String(signature[..<colon])
        guard signer == name else { throw .untrustedSigner(found: signer, trusted: [name]) }
        guard let signatureBytes = Data(base64Encoded: String(signature[signature.index(after: colon)...])),
            signatureBytes.count == 64, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: bytes),
            key.isValidSignature(signatureBytes, for: payload)
        else { throw .badSignature(keyName: name) }
    }

    public static func == (lhs: VerifyingKey, rhs: VerifyingKey) -> Bool { lhs.nixFormat == rhs.nixFormat }
}
