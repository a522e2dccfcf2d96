import Crypto

/// SHA-256 helpers with the lowercase hex form used in manifests and the state database.
public struct SHA256Hasher {
    private var hasher = SHA256()

    public init() {}

    public mutating func update(_ bytes: [UInt8]) { hasher.update(data: bytes) }
    public mutating func update(_ buffer: UnsafeRawBufferPointer) { hasher.update(bufferPointer: buffer) }
    public mutating func update(_ text: String) { hasher.update(data: Array(text.utf8)) }

    public consuming func finalizeHex() -> String { hexString(hasher.finalize()) }

    /// The 32 bytes, for encodings other than hex (Nix's base32).
    public consuming func finalize() -> [UInt8] { Array(hasher.finalize()) }

    public static func hex(_ bytes: [UInt8]) -> String {
        var hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalizeHex()
    }
}

func hexString(_ digest: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var result: [UInt8] = []
    for byte in digest {
        result.append(digits[Int(byte >> 4)])
        result.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: result, as: UTF8.self)
}
