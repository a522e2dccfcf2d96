import FleetProtocol

/// One run of a host as `fleet logs` shows it: its report (as ingested) and its log.
public struct RunRecord: Codable, Sendable, Equatable {
    /// Orders records; `fleet logs --follow` asks for those after the last one shown.
    public var id: Int64
    /// The report's file name in `logs/`.
    public var report: String
    /// When the server received it (UTC).
    public var receivedAt: String
    public var state: String
    public var generation: UInt64?
    public var previousGeneration: UInt64?
    public var startedAt: String
    public var finishedAt: String
    public var durationSeconds: Double
    public var rebootNeeded: Bool?
    public var reason: String?
    /// The log's file name, and its text as kept (host-written: print it with ``TerminalText``).
    public var logName: String?
    public var log: String?
    /// The size of the uploaded log file (more than the text when only its start and end were kept).
    public var logSize: Int64?
    /// The whole report, as uploaded.
    public var reportJSON: String

    init(_ row: ReviewStore.ReportRow, log: (text: [UInt8], size: Int64)?) {
        id = row.id
        report = row.name
        receivedAt = UTCTime.iso(nanoseconds: row.received)
        state = row.state.rawValue
        generation = row.generation
        previousGeneration = row.previousGeneration
        startedAt = row.startedAt
        finishedAt = row.finishedAt
        durationSeconds = row.duration
        rebootNeeded = row.rebootNeeded
        reason = row.reason
        logName = row.logName
        self.log = log.map { String(decoding: $0.text, as: UTF8.self) }
        logSize = log?.size
        reportJSON = row.json
    }
}
