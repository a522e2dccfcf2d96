/// Nix's own base32 (`printHash32`): the digits of store path hashes and of the `sha256:` hashes in narinfo files.
/// Not RFC 4648: another alphabet, and the bits read from the last byte first.
public enum NixBase32 {
    static let alphabet = Array("0123456789abcdfghijklmnpqrsvwxyz".utf8)

    /// `bytes` in Nix's base32: 52 characters for a SHA-256 digest.
    public static func encode(_ bytes: [UInt8]) -> String {
        guard !bytes.isEmpty else { return "" }
        let length = (bytes.count * 8 - 1) / 5 + 1
        var characters: [UInt8] = []
        characters.reserveCapacity(length)
        for n in stride(from: length - 1, through: 0, by: -1) {
            let bit = n * 5
            let (index, shift) = (bit / 8, bit % 8)
            var value = Int(bytes[index]) >> shift
            if index + 1 < bytes.count { value |= Int(bytes[index + 1]) << (8 - shift) }
            characters.append(alphabet[value & 0x1f])
        }
        return String(decoding: characters, as: UTF8.self)
    }

    /// Whether `text` could be a SHA-256 digest in Nix's base32.
    public static func isSHA256(_ text: some StringProtocol) -> Bool {
        text.utf8.count == 52 && text.utf8.allSatisfy { alphabet.contains($0) }
    }
}
