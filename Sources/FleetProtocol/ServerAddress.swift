import Glibc

/// What a server address may be, in client.toml and fleet.toml: a DNS host name or an IP literal.
///
/// The address reaches libssh, messages and generated files; anything else (quotes, newlines, spaces, a
/// megabyte of text) used to be accepted at load and fail much later as an "unknown error", so it is refused
/// where it is read, naming the file and key.
public enum ServerAddress {
    /// Longest DNS name (RFC 1035); IP literals are far shorter.
    public static let maximumLength = 253

    /// Why `address` is not a server address, or nil when it is one.
    public static func problem(_ address: String) -> String? {
        if isIPv4(address) || isIPv6(address) || isHostName(address) { return nil }
        let shown =
            address.utf8.count <= 80
            ? quoted(address) : quoted(String(address.prefix(40))) + "… (\(address.utf8.count) bytes)"
        return "\(shown) is not a host name or an IP address (a host name is dot-separated labels of 1 to 63 letters, "
            + "digits and '-', not starting or ending with '-', at most \(maximumLength) characters; an IPv4 address "
            + "is like 192.0.2.1; an IPv6 address is like 2001:db8::1, without brackets)"
    }

    /// A dotted-quad IPv4 address, as inet_pton(3) reads it.
    public static func isIPv4(_ address: String) -> Bool {
        var raw = in_addr()
        return address.utf8.count <= 15 && !address.utf8.contains(0) && inet_pton(AF_INET, address, &raw) == 1
    }

    /// An IPv6 address without brackets or zone, as inet_pton(3) reads it.
    public static func isIPv6(_ address: String) -> Bool {
        var raw = in6_addr()
        return address.utf8.count <= 45 && !address.utf8.contains(0) && inet_pton(AF_INET6, address, &raw) == 1
    }

    /// A DNS host name (RFC 1123 labels); a last label of digits only is a mistyped IPv4 address, not a name.
    public static func isHostName(_ address: String) -> Bool {
        let bytes = Array(address.utf8)
        guard (1...maximumLength).contains(bytes.count) else { return false }
        let labels = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.count), label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-"),
                label.allSatisfy({ isLetterOrDigit($0) || $0 == UInt8(ascii: "-") })
            else { return false }
        }
        return !(labels.last ?? []).allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    private static func isLetterOrDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}
