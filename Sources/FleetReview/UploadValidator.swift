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

    /// What `confirmation.json` holds: the host could reach the server after an activation.
    struct Confirmation: Decodable {
        var host: String
        var generation: UInt64
        var at: String
    }

    func report(_ bytes: [UInt8], nameGeneration: UInt64?) -> Checked<RunReport> {
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
        if let log = report.log, !(UploadName(log).isLog) {
            return .invalid("it names its log \(quoted(String(log.prefix(100)))), which is not a log file name")
        }
        if let number = report.profileGeneration, number < 0 {
            return .invalid("its profile generation \(number) is negative")
        }
        return .valid(report)
    }

    func heartbeat(_ bytes: [UInt8]) -> Checked<Heartbeat> {
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
        {
            return .invalid(problem)
        }
        guard UTCTime.parseISO(beat.at) != nil else { return .invalid("its time \"at\" is not a UTC time") }
        return .valid(beat)
    }

    func confirmation(_ bytes: [UInt8]) -> Checked<Confirmation> {
        let note: Confirmation
        switch decode(Confirmation.self, bytes, what: "confirmation") {
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
        if generation == 0 || generation > publishedGeneration {
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
