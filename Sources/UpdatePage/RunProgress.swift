/// One run the page started, as the page and `GET /run` show it: its phase lines so far and, once it ended,
/// its outcome.
public struct RunProgress: Sendable, Codable, Equatable {
    public enum Phase: String, Sendable, Codable {
        case running
        case finished
    }

    /// Counts the runs this page started, from 1.
    public var id: Int
    public var phase: Phase
    public var startedAt: String
    public var finishedAt: String?
    /// The run's standard error, line by line (phase lines without their `fleet-client[host]: ` prefix).
    public var lines: [String]
    /// Lines dropped from the front to keep ``lines`` bounded.
    public var droppedLines: Int
    /// A ``FleetProtocol/RunOutcome`` raw value (`applied`, `locked`, …), or `error` for any other exit.
    public var outcome: String?
    public var exitStatus: Int32?
    /// One line saying how it ended, for the page.
    public var summary: String?
}
