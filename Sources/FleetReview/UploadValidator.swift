import FleetProtocol
import Foundation

/// The outcome of a check: the value, or what is wrong with it (one line, for the host's warnings).
enum Checked<Value> {
    case valid(Value)
    case invalid(String)
}

/// Checks what a host uploaded against what the server knows, before any of it is stored.
///
/// A report can be well-formed JSON and still lie: claim to come from another host, be about a generation that
/// was never published to this one, or give durations no run can have. Such files are refused with a warning
/// that says which lie, and nothing in them reaches the host's status.
struct UploadValidator {
    let host: HostName
    /// The highest generation ever published to the host (manifest or state.db), 0 when none.
    let publishedGeneration: UInt64
    let limits: IngestLimits

    /// How far ahead of the server's clock a host's times may be, and how far behind its own previous word
    /// (clocks drift and are corrected); beyond that a time is impossible and the file is refused.
    static let clockSkewSeconds: Int64 = 5 * 60

    /// The newest thing the host said before the file being checked arrived: when (by its own clock, as it
    /// wrote it) and which generation it said it runs.
    struct PreviousWord: Equatable {
        /// Seconds since the epoch, the host's clock.
        var at: Int64
        var applied: UInt64?
        /// `report x` or `heartbeat`, for messages.
        var what: String
    }

    /// - Parameters:
    ///   - received: when the server received the file (its mtime, set by sshd), nanoseconds since the epoch.
    ///   - previous: the host's newest word received before it.
    func report(
        _ bytes: [UInt8], nameGeneration: UInt64?, received: Int64, previous: PreviousWord?
    ) -> Checked<RunReport> {
        let report: RunReport
        switch decode(RunReport.self, bytes, what: "report") {
        case .valid(let decoded): report = decoded
        case .invalid(let problem): return .invalid(problem)
        }
        if let problem = checkFormat(report.format) ?? checkHost(report.host) { return .invalid(problem) }
        if report.generation != nameGeneration {
            return .invalid(
                "its name says generation \(nameGeneration.map(String.init) ?? "none") but it says "
                    + (report.generation.map { "generation \($0)" } ?? "none"))
        }
        if let problem = checkGeneration(report.generation, "generation")
            ?? checkGeneration(report.previousGeneration, "previousGeneration")
            ?? checkPollInterval(report.pollIntervalSeconds)
            ?? checkAttempts([
                ("connectAttempts", report.connectAttempts), ("failedConnectAttempts", report.failedConnectAttempts),
            ])
            ?? OverlayList.problem(report.overlays)
            ?? ServerList.problem(server: report.server, skipped: report.skippedServers)
        {
            return .invalid(problem)
        }
        let durations = [
            ("download", report.durations.download), ("build", report.durations.build),
            ("activation", report.durations.activation), ("total", report.durations.total),
        ]
        for (name, value) in durations {
            guard let value else { continue }
            guard value.isFinite, value >= 0, value <= limits.longestDurationSeconds else {
                return .invalid(
                    "its \(name) duration \(value) s is absurd (0 to \(Int(limits.longestDurationSeconds)) s allowed)")
            }
        }
        guard let started = UTCTime.parseISO(report.startedAt), let finished = UTCTime.parseISO(report.finishedAt)
        else {
            return .invalid("startedAt/finishedAt are not UTC times (YYYY-MM-DDTHH:MM:SSZ)")
        }
        guard finished >= started else {
            return .invalid("it finished (\(report.finishedAt)) before it started (\(report.startedAt))")
        }
        let applied = report.state == .applied ? report.generation : report.previousGeneration
        if let problem = checkTime(finished, named: "finished", received: received, previous: previous)
            ?? checkNotBackwards(applied, previous: previous, rollback: report.state == .rolledBack)
        {
            return .invalid(problem)
        }
        if let log = report.log, !(UploadName(log).isLog) {
            return .invalid("it names its log \(quoted(String(log.prefix(100)))), which is not a log file name")
        }
        if let number = report.profileGeneration, number < 0 {
            return .invalid("its profile generation \(number) is negative")
        }
        return .valid(report)
    }

    func heartbeat(_ bytes: [UInt8], received: Int64, previous: PreviousWord?) -> Checked<Heartbeat> {
        let beat: Heartbeat
        switch decode(Heartbeat.self, bytes, what: "heartbeat") {
        case .valid(let decoded): beat = decoded
        case .invalid(let problem): return .invalid(problem)
        }
        if let problem = checkFormat(beat.format) ?? checkHost(beat.host)
            ?? checkGeneration(beat.appliedGeneration, "appliedGeneration")
            ?? checkGeneration(beat.seenGeneration, "seenGeneration")
            ?? checkGeneration(beat.failedGeneration, "failedGeneration")
            ?? checkPollInterval(beat.pollIntervalSeconds)
            ?? checkAttempts([("failedConnectAttempts", beat.failedConnectAttempts)])
            ?? OverlayList.problem(beat.overlays)
            ?? ServerList.problem(server: beat.server, skipped: beat.skippedServers)
        {
            return .invalid(problem)
        }
        guard let at = UTCTime.parseISO(beat.at) else { return .invalid("its time \"at\" is not a UTC time") }
        if let problem = checkTime(at, named: "was written", received: received, previous: previous)
            ?? checkNotBackwards(beat.appliedGeneration, previous: previous, rollback: false)
        {
            return .invalid(problem)
        }
        return .valid(beat)
    }

    /// Whether a heartbeat slot's bytes may be a write caught half way (see ``HeartbeatSlot``): empty, or the
    /// start of a JSON object that does not parse, as every prefix of one does not. fleet-client's heartbeat starts
    /// with `{`, so anything else is not a write in progress.
    static func isUnfinishedHeartbeat(_ bytes: [UInt8]) -> Bool {
        guard let first = bytes.first else { return true }
        return first == UInt8(ascii: "{") && (try? JSONSerialization.jsonObject(with: Data(bytes))) == nil
    }

    func confirmation(_ bytes: [UInt8]) -> Checked<ConfirmationNote> {
        let note: ConfirmationNote
        switch decode(ConfirmationNote.self, bytes, what: "confirmation") {
        case .valid(let decoded): note = decoded
        case .invalid(let problem): return .invalid(problem)
        }
        if let problem = checkHost(note.host) ?? checkGeneration(note.generation, "generation") {
            return .invalid(problem)
        }
        return .valid(note)
    }

    private func decode<Value: Decodable>(_ type: Value.Type, _ bytes: [UInt8], what: String) -> Checked<Value> {
        do {
            return .valid(try JSONDecoder().decode(type, from: Data(bytes)))
        } catch let error as DecodingError {
            return .invalid("is not a valid \(what): \(Self.describe(error))")
        } catch {
            return .invalid("is not a valid \(what): \(error)")
        }
    }

    /// A time the host wrote must be possible: not ahead of the server's clock when it arrived, nor before what
    /// the host said earlier (a report dated 2099 or 1970 would otherwise reorder the host's history).
    private func checkTime(_ seconds: Int64, named what: String, received: Int64, previous: PreviousWord?) -> String? {
        let receivedSeconds = received / UTCTime.nanosecondsPerSecond
        if seconds > receivedSeconds + Self.clockSkewSeconds {
            return "it says it \(what) at \(UTCTime.iso(nanoseconds: seconds * UTCTime.nanosecondsPerSecond)), "
                + "after it arrived (\(UTCTime.iso(nanoseconds: received))): the host's clock is wrong or the file lies"
        }
        if let previous, seconds < previous.at - Self.clockSkewSeconds {
            return "it says it \(what) at \(UTCTime.iso(nanoseconds: seconds * UTCTime.nanosecondsPerSecond)), "
                + "before the host's previous \(previous.what) "
                + "(\(UTCTime.iso(nanoseconds: previous.at * UTCTime.nanosecondsPerSecond)))"
        }
        return nil
    }

    /// What a host says it runs never goes back, except by a rollback report: anything else saying so is stale
    /// or forged.
    private func checkNotBackwards(_ applied: UInt64?, previous: PreviousWord?, rollback: Bool) -> String? {
        guard !rollback, let applied, let before = previous?.applied, applied < before else { return nil }
        return "it says generation \(applied) is applied, but the host's previous \(previous?.what ?? "word") said "
            + "\(before); only a rollback report may go back"
    }

    private func checkFormat(_ format: Int) -> String? {
        format == RunReport.currentFormat
            ? nil : "has format \(format), and this fleet reads format \(RunReport.currentFormat)"
    }

    private func checkHost(_ claimed: String) -> String? {
        claimed == host.value
            ? nil : "claims to come from host \(quoted(String(claimed.prefix(100)))), but it is in \(host)'s logs/"
    }

    private func checkGeneration(_ generation: UInt64?, _ key: String) -> String? {
        guard let generation else { return nil }
        if let problem = Generation.problem(with: generation, "its \(key)") { return problem }
        if generation > publishedGeneration {
            return "its \(key) \(generation) was never published to \(host) "
                + (publishedGeneration == 0 ? "(nothing was)" : "(the newest is \(publishedGeneration))")
        }
        return nil
    }

    /// One short line for a decoding error: what is wrong and where.
    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.isEmpty ? "" : " at \(keys.joined(separator: "."))"
        }
        switch error {
        case .keyNotFound(let key, _): return "the key \(quoted(key.stringValue)) is missing"
        case .typeMismatch(_, let context): return "a value has the wrong type\(path(context))"
        case .valueNotFound(_, let context): return "a value is missing\(path(context))"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not JSON" : "a value is not allowed\(path(context))"
        @unknown default: return "not readable"
        }
    }
}

extension UploadName {
    var isLog: Bool {
        if case .log = self { return true }
        return false
    }
}
