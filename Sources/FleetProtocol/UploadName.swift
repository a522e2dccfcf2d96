/// What a name in a host's `logs/` stands for. Only the names fleet-client writes are ever opened; anything
/// else is counted and left alone.
///
/// - `report-<time>[-g<generation>].json` and `log-<time>[-g<generation>].txt`: one run's report and full log,
///   written once (uploaded under a temporary name and renamed), so a name that was read is never read again.
/// - `heartbeat-a.json`, `heartbeat-b.json`: the heartbeat's two slots (``HeartbeatSlot``), written in place in
///   turn, each poll into the slot that does not hold the client's last good heartbeat. A slot being written
///   reads as empty or as a prefix of a JSON object; the other slot still holds the previous heartbeat.
/// - `heartbeat.json`: the heartbeat of a fleet-client from before the slots, replaced by rename on every poll.
/// - `confirmation.json`: replaced by rename on every confirmation.
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

    /// The heartbeat of a fleet-client from before ``HeartbeatSlot`` (still ingested, and still read by a
    /// publish that recovers generations).
    public static let heartbeatName = "heartbeat.json"
    /// Every name a heartbeat comes under: both slots, then the older clients' name.
    public static let heartbeatNames = HeartbeatSlot.allCases.map(\.fileName) + [heartbeatName]
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
            if bytes.elementsEqual(heartbeatName.utf8) || HeartbeatSlot(fileName: bytes) != nil { return .heartbeat }
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

/// One of the two files in `logs/` a fleet-client writes its heartbeat into, in place and in turn.
///
/// Writing in place saves the rename a temporary name needs (one round trip of every poll). What the rename
/// guaranteed, that a failed or interrupted write never spoils the last good heartbeat, the alternation keeps:
/// each poll writes the slot that does not hold the last heartbeat written whole (the client remembers it), so
/// a write can only spoil the slot that is being written.
public enum HeartbeatSlot: String, Codable, Sendable, CaseIterable {
    case a
    case b

    /// `heartbeat-a.json` or `heartbeat-b.json`.
    public var fileName: String { "heartbeat-\(rawValue).json" }

    /// The slot written after this one.
    public var other: HeartbeatSlot { self == .a ? .b : .a }

    /// The slot named `bytes`, if they are one's file name. Allocates nothing (see ``UploadName``).
    init?(fileName bytes: UnsafeBufferPointer<UInt8>) {
        guard bytes.count == 16, bytes.starts(with: "heartbeat-".utf8), bytes[11...].elementsEqual(".json".utf8) else {
            return nil
        }
        switch bytes[10] {
        case UInt8(ascii: "a"): self = .a
        case UInt8(ascii: "b"): self = .b
        default: return nil
        }
    }
}
