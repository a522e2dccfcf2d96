/// What a name in a host's `logs/` stands for. Only the names fleet-client writes are ever opened; anything
/// else is counted and left alone.
///
/// - `report-<time>[-g<generation>].json` and `log-<time>[-g<generation>].txt`: one run's report and full log,
///   written once (uploaded under a temporary name and renamed), so a name that was read is never read again.
/// - `heartbeat.json`, `confirmation.json`: replaced by rename on every poll or confirmation.
/// - `.fleet-tmp-…`: an upload in progress.
///
/// `<time>` is `YYYYMMDDTHHMMSSmmmZ` (UTC, milliseconds): names of one kind sort by time.
public enum UploadName: Equatable, Sendable {
    case report(generation: UInt64?)
    case log(generation: UInt64?)
    case heartbeat
    case confirmation
    case temporary
    case invalid

    public static let heartbeatName = "heartbeat.json"
    public static let confirmationName = "confirmation.json"
    static let temporaryPrefix = ".fleet-tmp-"

    public init(_ name: String) {
        if name == Self.heartbeatName {
            self = .heartbeat
        } else if name == Self.confirmationName {
            self = .confirmation
        } else if name.hasPrefix(Self.temporaryPrefix) {
            self = .temporary
        } else if let generation = Self.parse(name, prefix: "report-", suffix: ".json") {
            self = .report(generation: generation.generation)
        } else if let generation = Self.parse(name, prefix: "log-", suffix: ".txt") {
            self = .log(generation: generation.generation)
        } else {
            self = .invalid
        }
    }

    /// Reports and logs: written once, so bookkept by name alone.
    public var isWrittenOnce: Bool {
        switch self {
        case .report, .log: true
        default: false
        }
    }

    /// A name of the right shape, and the generation it carries if any.
    private struct Match {
        let generation: UInt64?
    }

    /// `<prefix><time>[-g<generation>]<suffix>`, or nil for any other name.
    private static func parse(_ name: String, prefix: String, suffix: String) -> Match? {
        let bytes = Array(name.utf8)
        let prefixBytes = Array(prefix.utf8)
        let suffixBytes = Array(suffix.utf8)
        let timeLength = 19  // YYYYMMDDTHHMMSSmmmZ
        guard bytes.count >= prefixBytes.count + timeLength + suffixBytes.count, bytes.count <= 80,
            bytes.starts(with: prefixBytes), bytes.suffix(suffixBytes.count).elementsEqual(suffixBytes)
        else { return nil }
        let time = bytes[prefixBytes.count..<(prefixBytes.count + timeLength)]
        for (offset, byte) in time.enumerated() {
            switch offset {
            case 8: guard byte == UInt8(ascii: "T") else { return nil }
            case 18: guard byte == UInt8(ascii: "Z") else { return nil }
            default: guard byte >= 48 && byte <= 57 else { return nil }
            }
        }
        let rest = bytes[(prefixBytes.count + timeLength)..<(bytes.count - suffixBytes.count)]
        if rest.isEmpty { return Match(generation: nil) }
        guard rest.count >= 3, rest.count <= 22, rest.starts(with: Array("-g".utf8)) else { return nil }
        let digits = rest.dropFirst(2)
        guard digits.first != UInt8(ascii: "0"), digits.allSatisfy({ $0 >= 48 && $0 <= 57 }),
            let generation = UInt64(String(decoding: digits, as: UTF8.self)), generation >= 1
        else { return nil }
        return Match(generation: generation)
    }
}
