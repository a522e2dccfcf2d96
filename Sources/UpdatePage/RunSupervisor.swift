import CommandRunner
import FleetProtocol
import Foundation
import Synchronization

/// Starts runs for the page, one at a time, and keeps the progress of the latest for it to show.
///
/// A run is the real `fleet-client run --config <path>` in its own process (the same executable as the
/// page), so it takes the same lock as the timer's runs, writes the same state and reports, and is not
/// affected by anything that happens to the page. Its standard error (the phase lines) is the progress; its
/// exit status is the outcome (``FleetProtocol/RunOutcome/exitStatus``).
public final class RunSupervisor: Sendable {
    /// What a press did.
    public enum PressResult: Sendable, Equatable {
        /// A new run started.
        case started(RunProgress)
        /// A run the page started is still going; no other one was started.
        case alreadyRunning(RunProgress)
        /// The last run started too recently.
        case tooSoon(startedAgo: Duration, wait: Duration)
    }

    /// At most this many lines of a run are kept (the latest); a run prints a few dozen.
    static let lineLimit = 400

    private struct State {
        var limiter: PressLimiter
        var current: RunProgress?
        var nextID = 1
    }

    /// How long after a run started the next may start.
    public let minimumInterval: Duration
    private let executable: String
    private let arguments: [String]
    private let environment: [String: String?]
    private let state: Mutex<State>
    private let clock = ContinuousClock()

    /// - Parameters:
    ///   - executable: the fleet-client to run; `/proc/self/exe` is the page's own executable.
    ///   - configurationPath: passed as `run --config`.
    ///   - minimumInterval: how long after a run started the next may start.
    public init(executable: String = "/proc/self/exe", configurationPath: String, minimumInterval: Duration) {
        self.minimumInterval = max(minimumInterval, .zero)
        self.executable = executable
        self.arguments = ["run", "--config", configurationPath]
        // The run is not socket-activated: systemd's variables are the page's only.
        self.environment = ["LISTEN_PID": nil, "LISTEN_FDS": nil, "LISTEN_FDNAMES": nil]
        self.state = Mutex(State(limiter: PressLimiter(minimumInterval: minimumInterval)))
    }

    /// The latest run the page started, going or finished; nil before the first press.
    public var current: RunProgress? {
        state.withLock { $0.current }
    }

    /// How long until a press may start a run (zero when it may now).
    public var waitBeforeNextRun: Duration {
        let now = clock.now
        return state.withLock { $0.limiter.refusal(at: now)?.wait ?? .zero }
    }

    /// Starts a run unless one is going (then shows it) or the last one started too recently.
    public func press() -> PressResult {
        let now = clock.now
        let result: PressResult = state.withLock { state in
            if let current = state.current, current.phase == .running { return .alreadyRunning(current) }
            if let refusal = state.limiter.refusal(at: now) {
                return .tooSoon(startedAgo: refusal.startedAgo, wait: refusal.wait)
            }
            state.limiter.recordStart(at: now)
            let run = RunProgress(
                id: state.nextID, phase: .running, startedAt: Self.timestamp(), finishedAt: nil, lines: [],
                droppedLines: 0, outcome: nil, exitStatus: nil, summary: nil)
            state.nextID += 1
            state.current = run
            return .started(run)
        }
        if case .started(let run) = result {
            Task.detached { await self.execute(run.id) }
        }
        return result
    }

    private func execute(_ id: Int) async {
        do {
            // Its own session: stopping the page (SIGTERM to it or its group) must not stop a run that may be
            // inside its confirmation window; the run ignores the pipe the page leaves closed (see
            // FleetClientCommand.main).
            let status = try await Command.streamingStandardError(
                executable, arguments, environment: environment, ownSession: true
            ) { line in
                self.append(line, to: id)
            }
            finish(id, exitStatus: status)
        } catch {
            finish(id, exitStatus: nil, failure: error.description)
        }
    }

    private func append(_ line: String, to id: Int) {
        let text = Self.displayed(line)
        guard !text.isEmpty else { return }
        state.withLock { state in
            guard state.current?.id == id else { return }
            state.current?.lines.append(text)
            if let count = state.current?.lines.count, count > Self.lineLimit {
                state.current?.lines.removeFirst(count - Self.lineLimit)
                state.current?.droppedLines += count - Self.lineLimit
            }
        }
    }

    private func finish(_ id: Int, exitStatus: Int32?, failure: String? = nil) {
        state.withLock { state in
            guard var run = state.current, run.id == id else { return }
            run.phase = .finished
            run.finishedAt = Self.timestamp()
            run.exitStatus = exitStatus
            let outcome = exitStatus.flatMap { status in RunOutcome.allCases.first { $0.exitStatus == status } }
            run.outcome = outcome?.rawValue ?? "error"
            if let failure {
                run.summary = "error: the run could not be started: \(failure)"
            } else if let outcome {
                // The run's last phase line is "<outcome>: <reason>", but for a run that did not start (locked).
                let last = run.lines.last { $0.hasPrefix(outcome.rawValue + ":") }
                run.summary = last ?? (run.lines.last.map { "\(outcome.rawValue): \($0)" } ?? outcome.rawValue)
            } else {
                let last = run.lines.last.map { ": \($0)" } ?? ""
                run.summary = "error: fleet-client run exited with status \(exitStatus ?? -1)\(last)"
            }
            state.current = run
        }
    }

    /// A line as the page shows it: without the `fleet-client[host]: ` prefix (the page names the host) and
    /// without control characters (terminal escapes have no place in a web page).
    static func displayed(_ line: String) -> String {
        var text = Substring(line)
        if text.hasPrefix("fleet-client["), let end = text.range(of: "]: ") {
            text = text[end.upperBound...]
        }
        let scalars = text.unicodeScalars.filter { $0 == "\t" || !($0.properties.generalCategory == .control) }
        var result = String(String.UnicodeScalarView(scalars))
        while let last = result.last, last.isWhitespace { result.removeLast() }
        return result
    }

    static func timestamp() -> String {
        Date().formatted(.iso8601)
    }
}
