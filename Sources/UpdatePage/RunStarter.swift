public import ClientStateStore
import CommandRunner
import FleetProtocol
import Foundation
import Glibc
import Synchronization

/// Starts runs for the page and shows the latest run on the host, whoever started it.
///
/// The page runs no activation itself: a press runs the start command (by default `systemctl start --no-block
/// fleet-client.service`), so a run the button starts is the same unit as the timer's, with its lock, timeouts
/// and `OnFailure=`, and stopping or restarting the page never touches it. Progress comes from the file the run
/// writes (``ClientStateStore/RunProgress``), which the page only reads: it needs no privilege but starting
/// that one unit.
public final class RunStarter: Sendable {
    /// What a press did.
    public enum PressResult: Sendable, Equatable {
        /// The start command ran; the run shows up in the progress file when it starts.
        case started(RunProgress)
        /// A run is going; no other one was started.
        case alreadyRunning(RunProgress)
        /// The last run started too recently.
        case tooSoon(startedAgo: Duration, wait: Duration)
        /// The start command failed; the progress says how.
        case couldNotStart(RunProgress)
    }

    /// A press the page is waiting to see in the progress file.
    private struct Request {
        /// The id the run will have (one more than the file's when the button was pressed).
        var id: Int
        /// When the wait for the run began: the press, then the moment the start command returned (a run can
        /// only show up after that, however long the command took on a loaded machine).
        var waitingSince: ContinuousClock.Instant
        var startedAt: String
        /// Why the start command failed, once it did.
        var failure: String?
    }

    private struct State {
        var limiter: PressLimiter
        var request: Request?
    }

    /// How long after a run started the next may start.
    public let minimumInterval: Duration
    /// The start command, as the page shows it.
    public let startCommandLine: String
    private let startCommand: [String]
    private let stateDirectory: String
    private let startTimeout: Duration
    /// How long the start command may take: `systemctl start --no-block` returns at once unless systemd itself
    /// is stuck.
    static let startCommandTimeout: Duration = .seconds(30)
    private let state: Mutex<State>

    /// - Parameters:
    ///   - startCommand: the program and its arguments (no shell) that start a run and return.
    ///   - stateDirectory: where the run writes `progress.json`.
    ///   - minimumInterval: how long after a press started a run the next may.
    ///   - startTimeout: how long a press waits for its run to show up in the progress file, once the start
    ///     command returned, before it is said to have failed.
    public init(
        startCommand: [String], stateDirectory: String, minimumInterval: Duration, startTimeout: Duration = .seconds(30)
    ) {
        self.startCommand = startCommand
        self.startCommandLine = startCommand.joined(separator: " ")
        self.stateDirectory = stateDirectory
        self.minimumInterval = max(minimumInterval, .zero)
        self.startTimeout = startTimeout
        self.state = Mutex(State(limiter: PressLimiter(minimumInterval: minimumInterval)))
    }

    /// The latest run: the one a press is waiting for, else the progress file's (nil when there is none yet).
    public var current: RunProgress? { latest().shown }

    /// What ``current`` shows, and the id of the progress file's run (0 when there is none).
    private func latest() -> (shown: RunProgress?, fileID: Int) {
        let now = ContinuousClock.now
        let file = Self.shown(try? RunProgress.load(stateDirectory: stateDirectory))
        let fileID = file?.id ?? 0
        return state.withLock { state in
            guard let request = state.request else { return (file, fileID) }
            if fileID >= request.id {
                state.request = nil
                return (file, fileID)
            }
            return (waiting(for: request, now: now), fileID)
        }
    }

    /// How long until a press may start a run (zero when it may now).
    public var waitBeforeNextRun: Duration {
        let now = ContinuousClock.now
        return state.withLock { $0.limiter.refusal(at: now)?.wait ?? .zero }
    }

    /// Starts a run unless one is going (then shows it) or the last one started too recently.
    public func press() async -> PressResult {
        let now = ContinuousClock.now
        let (shown, fileID) = latest()
        let decision: PressResult? = state.withLock { state in
            if let shown, shown.phase == .running { return .alreadyRunning(shown) }
            if let refusal = state.limiter.refusal(at: now) {
                return .tooSoon(startedAgo: refusal.startedAgo, wait: refusal.wait)
            }
            state.limiter.recordStart(at: now)
            state.request = Request(id: fileID + 1, waitingSince: now, startedAt: UTCTime.iso(Date()))
            return nil
        }
        if let decision { return decision }

        let failure = await runStartCommand()
        let returned = ContinuousClock.now
        state.withLock {
            $0.request?.waitingSince = returned
            $0.request?.failure = failure
        }
        let progress =
            latest().shown ?? RunProgress(id: fileID + 1, phase: .running, startedAt: UTCTime.iso(Date()))
        return failure == nil ? .started(progress) : .couldNotStart(progress)
    }

    /// Runs the start command; nil when it succeeded, otherwise why not.
    private func runStartCommand() async -> String? {
        guard let executable = startCommand.first else { return "no start command" }
        do {
            let output = try await Command.run(
                executable, Array(startCommand.dropFirst()), outputLimit: 64 << 10, timeout: Self.startCommandTimeout)
            guard output.succeeded else {
                let said = (output.standardError + output.standardOutput).trimmingWhitespace()
                return "\(startCommandLine) exited with status \(output.exitCode)" + (said.isEmpty ? "" : ": \(said)")
            }
            return nil
        } catch {
            return error.description
        }
    }

    /// The run a press asked for, until it shows up in the progress file: starting, or failed.
    private func waiting(for request: Request, now: ContinuousClock.Instant) -> RunProgress {
        var progress = RunProgress(
            id: request.id, phase: .running, startedAt: request.startedAt,
            summary: "waiting for the run to start (\(startCommandLine))")
        let failure: String? =
            request.failure.map { "the run could not be started: \($0)" }
            ?? (now - request.waitingSince > startTimeout
                ? "no run started within \(PageResponder.wholeSeconds(startTimeout)) s of starting it; see "
                    + "`journalctl -u fleet-client.service` (another run may have held the lock)" : nil)
        if let failure {
            progress.phase = .finished
            progress.outcome = "error"
            progress.summary = "error: \(failure)"
        }
        return progress
    }

    /// The file's progress as the page shows it: a running run whose process is gone was killed (or the
    /// machine went down) and will not finish.
    static func shown(_ progress: RunProgress??) -> RunProgress? {
        guard var progress = progress ?? nil else { return nil }
        if progress.phase == .running, let pid = progress.pid, pid > 0, kill(pid, 0) != 0, errno == ESRCH {
            progress.phase = .finished
            progress.outcome = "error"
            progress.summary =
                "error: the run (process \(pid)) stopped without finishing: it was killed, or the machine went "
                + "down; the next run finishes what it left"
        }
        progress.lines = progress.lines.map(displayed)
        return progress
    }

    /// A line as the page shows it: without control characters (terminal escapes have no place in a web page).
    static func displayed(_ line: String) -> String {
        let scalars = line.unicodeScalars.filter { $0 == "\t" || !($0.properties.generalCategory == .control) }
        var result = String(String.UnicodeScalarView(scalars))
        while let last = result.last, last.isWhitespace { result.removeLast() }
        return result
    }
}
