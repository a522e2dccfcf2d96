import FleetFiles
import FleetProtocol
import Foundation

/// The latest run on this host as it goes: its phase lines so far and, once it ended, its outcome, in
/// `<state_dir>/progress.json`.
///
/// The run that holds the lock writes it (whoever started it: the timer, the page's button through
/// `fleet-client.service`, or a sysadmin at a terminal); the page only reads it, so the page can run
/// unprivileged and never owns a run. Like `state.json` it is readable by everyone (0644): it holds phase lines
/// and outcomes, never secrets.
public struct RunProgress: Sendable, Codable, Equatable {
    public enum Phase: String, Sendable, Codable {
        case running
        case finished
    }

    public static let fileName = "progress.json"
    /// At most this many lines are kept (the latest); a run prints a few dozen phase lines, a build more.
    public static let lineLimit = 400
    /// A file larger than this is not a progress file.
    static let sizeLimit = 1 << 20

    /// Counts the runs on this host from 1 (one more than the previous file said).
    public var id: Int
    public var phase: Phase
    public var startedAt: String
    public var finishedAt: String?
    /// The process writing it: a running run whose process is gone was killed.
    public var pid: Int32?
    /// The run's phase lines (and build output, indented), without the `fleet-client[host]: ` prefix.
    public var lines: [String]
    /// Lines dropped from the front to keep ``lines`` bounded.
    public var droppedLines: Int
    /// A ``FleetProtocol/RunOutcome`` raw value (`applied`, `locked`, …), or `error` when the run could not say.
    public var outcome: String?
    public var exitStatus: Int32?
    /// One line saying how it ended.
    public var summary: String?

    public init(
        id: Int, phase: Phase, startedAt: String, finishedAt: String? = nil, pid: Int32? = nil, lines: [String] = [],
        droppedLines: Int = 0, outcome: String? = nil, exitStatus: Int32? = nil, summary: String? = nil
    ) {
        self.id = id
        self.phase = phase
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.pid = pid
        self.lines = lines
        self.droppedLines = droppedLines
        self.outcome = outcome
        self.exitStatus = exitStatus
        self.summary = summary
    }

    /// Appends lines, dropping the oldest beyond ``lineLimit``.
    public mutating func append(_ newLines: [String]) {
        lines += newLines
        if lines.count > Self.lineLimit {
            let excess = lines.count - Self.lineLimit
            lines.removeFirst(excess)
            droppedLines += excess
        }
    }

    /// The file's progress; nil when there is none yet.
    ///
    /// - Throws: when it exists but cannot be read or is not a progress file, naming it.
    public static func load(stateDirectory: String) throws(ClientError) -> RunProgress? {
        let path = stateDirectory + "/" + fileName
        let bytes: [UInt8]
        do {
            guard try FileStatus.of(path) != nil else { return nil }
            bytes = try FileIO.readNoFollow(path, limit: sizeLimit)
        } catch {
            throw ClientError("cannot read \(path): \(error)")
        }
        do {
            return try JSONDecoder().decode(RunProgress.self, from: Data(bytes))
        } catch {
            throw ClientError("\(path) is not a fleet-client progress file: \(error)")
        }
    }

    /// Replaces the file atomically (without fsync: it is rewritten at every phase line, and a crash that
    /// loses it loses only what the journal and the uploaded log also have).
    public func save(stateDirectory: String) throws(ClientError) {
        let path = stateDirectory + "/" + Self.fileName
        do {
            try FileIO.writeAtomically(ClientState.encoded(self), to: path, mode: 0o644, durable: false)
        } catch {
            throw ClientError("cannot write \(path): \(error)")
        }
    }
}
