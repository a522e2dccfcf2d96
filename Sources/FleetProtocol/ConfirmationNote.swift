import Foundation

/// `logs/confirmation.json`: written by a host over a new connection after an activation, so the server (and
/// the host's own magic rollback) knows the new system can still reach it.
public struct ConfirmationNote: Codable, Sendable, Equatable {
    public var host: String
    public var generation: UInt64
    /// ISO 8601, UTC.
    public var at: String

    public init(host: String, generation: UInt64, at: String) {
        self.host = host
        self.generation = generation
        self.at = at
    }

    /// Compact JSON with sorted keys and a final newline.
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Plain values: encoding cannot fail.
        return Array((try? encoder.encode(self)) ?? Data()) + [0x0a]
    }
}
