/// A validated host name: `^[a-z0-9][a-z0-9-]{0,62}$`.
///
/// The name becomes a path component, part of a Unix user name and a Nix attribute, so it is checked
/// byte by byte before it reaches any of them.
public struct HostName: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public let value: String

    public static let rule = "^[a-z0-9][a-z0-9-]{0,62}$"

    public init(_ value: String) throws(ProtocolError) {
        guard HostName.isValid(value) else { throw .invalidHostName(value) }
        self.value = value
    }

    public static func isValid(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        guard isLowerAlphanumeric(bytes[0]) else { return false }
        return bytes.dropFirst().allSatisfy { isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }
    }

    public var description: String { value }
    public static func < (lhs: HostName, rhs: HostName) -> Bool { lhs.value < rhs.value }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        try self.init(raw)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}
