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
    public static let temporaryPrefix = ".fleet-tmp-"

    /// `report-<stem>.json`, where `stem` is `<time>[-g<generation>]` (see ``stem(time:generation:)``).
    public static func reportName(stem: String) -> String { "report-\(stem).json" }

    /// `log-<stem>.txt`.
    public static func logName(stem: String) -> String { "log-\(stem).txt" }

    /// `<time>[-g<generation>]`, with `<time>` as `UTCTime.compact` writes it: what a run's report and log share.
    public static func stem(time: String, generation: UInt64?) -> String {
        time + (generation.map { "-g\($0)" } ?? "")
    }

    public init(_ name: String) {
        var name = name
        self = name.withUTF8 { Self.classify($0) }
    }

    private static func classify(_ bytes: UnsafeBufferPointer<UInt8>) -> UploadName {
        guard let first = bytes.first else { return .invalid }
        switch first {
        case UInt8(ascii: "r"):
            if let match = parse(bytes, prefix: "report-", suffix: ".json") {
                return .report(generation: match.generation)
            }
        case UInt8(ascii: "l"):
            if let match = parse(bytes, prefix: "log-", suffix: ".txt") { return .log(generation: match.generation) }
        case UInt8(ascii: "h"):
            if bytes.elementsEqual(heartbeatName.utf8) { return .heartbeat }
        case UInt8(ascii: "c"):
            if bytes.elementsEqual(confirmationName.utf8) { return .confirmation }
        case UInt8(ascii: "."):
            if bytes.starts(with: temporaryPrefix.utf8) { return .temporary }
        default:
            break
        }
        return .invalid
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

    /// `<prefix><time>[-g<generation>]<suffix>`, or nil for any other name. Called for every name of every host's
    /// `logs/` on every run: it allocates nothing.
    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>, prefix: StaticString, suffix: StaticString) -> Match?
    {
        let prefixCount = prefix.utf8CodeUnitCount
        let suffixCount = suffix.utf8CodeUnitCount
        let timeLength = 19  // YYYYMMDDTHHMMSSmmmZ
        guard bytes.count >= prefixCount + timeLength + suffixCount, bytes.count <= 80 else { return nil }
        let prefixBytes = UnsafeBufferPointer(start: prefix.utf8Start, count: prefixCount)
        let suffixBytes = UnsafeBufferPointer(start: suffix.utf8Start, count: suffixCount)
        guard bytes.starts(with: prefixBytes), bytes[(bytes.count - suffixCount)...].elementsEqual(suffixBytes) else {
            return nil
        }
        for offset in 0..<timeLength {
            let byte = bytes[prefixCount + offset]
            switch offset {
            case 8: guard byte == UInt8(ascii: "T") else { return nil }
            case 18: guard byte == UInt8(ascii: "Z") else { return nil }
            default: guard byte >= 48 && byte <= 57 else { return nil }
            }
        }
        let rest = bytes[(prefixCount + timeLength)..<(bytes.count - suffixCount)]
        if rest.isEmpty { return Match(generation: nil) }
        guard rest.count >= 3, rest.count <= 22, rest[rest.startIndex] == UInt8(ascii: "-"),
            rest[rest.startIndex + 1] == UInt8(ascii: "g"), rest[rest.startIndex + 2] != UInt8(ascii: "0")
        else { return nil }
        var generation: UInt64 = 0
        for byte in rest.dropFirst(2) {
            guard byte >= 48 && byte <= 57 else { return nil }
            let (times, overflow) = generation.multipliedReportingOverflow(by: 10)
            let (sum, overflowAdding) = times.addingReportingOverflow(UInt64(byte - 48))
            guard !overflow && !overflowAdding else { return nil }
            generation = sum
        }
        return Match(generation: generation)
    }
}
