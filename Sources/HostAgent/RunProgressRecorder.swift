import ClientStateStore
public import FleetProtocol
import Foundation
import Synchronization

/// Keeps `<state_dir>/progress.json` (``ClientStateStore/RunProgress``) up to date for the run holding the lock:
/// every phase line is written at once; build output, which can come thousands of lines a second, at most
/// once a second. The page reads the file; nothing in the run depends on it.
///
/// A file that cannot be written (a full disk) is said once in the journal and otherwise ignored: the run's
/// outcome is reported to the server and kept in `state.json` whatever happens here.
public final class RunProgressRecorder: Sendable {
    private struct State {
        var progress: RunProgress
        var lastWrite: ContinuousClock.Instant?
        var failed = false
    }

    static let streamedWriteInterval: Duration = .seconds(1)

    private let stateDirectory: String
    private let clock: WallClock
    private let state: Mutex<State>
    private let warn: @Sendable (String) -> Void

    /// Starts the record of a new run: numbered one after the previous file's, running, no lines yet.
    ///
    /// - Parameter warn: where the one line saying the file cannot be written goes.
    public init(
        stateDirectory: String, clock: WallClock, pid: Int32? = nil, warn: @escaping @Sendable (String) -> Void
    ) {
        self.stateDirectory = stateDirectory
        self.clock = clock
        self.warn = warn
        let previous = (try? RunProgress.load(stateDirectory: stateDirectory))?.map(\.id) ?? 0
        let progress = RunProgress(
            id: previous + 1, phase: .running, startedAt: UTCTime.iso(clock.now()), pid: pid ?? getpid())
        state = Mutex(State(progress: progress))
        save()
    }

    /// A phase line: written at once.
    public func phase(_ line: String) {
        state.withLock { $0.progress.append([line]) }
        save()
    }

    /// A line of a command's output (a build): written with the next phase line, or when a second passed
    /// since the last write.
    public func streamed(_ line: String) {
        let now = ContinuousClock.now
        let due = state.withLock { state in
            state.progress.append(["  " + line])
            guard let last = state.lastWrite else { return true }
            return now - last >= Self.streamedWriteInterval
        }
        if due { save() }
    }

    /// The run ended with `result`: its outcome, exit status and last phase line.
    public func finish(_ result: RunResult) {
        finish(
            outcome: result.outcome.rawValue, exitStatus: result.outcome.exitStatus,
            summary: "\(result.outcome.rawValue): \(result.reason)")
    }

    /// The run ended with an error before it had an outcome (exit status 1).
    public func finish(error: some Error) {
        finish(outcome: "error", exitStatus: 1, summary: "error: \(error)")
    }

    private func finish(outcome: String, exitStatus: Int32, summary: String) {
        state.withLock { state in
            state.progress.phase = .finished
            state.progress.finishedAt = UTCTime.iso(clock.now())
            state.progress.outcome = outcome
            state.progress.exitStatus = exitStatus
            state.progress.summary = summary
        }
        save()
    }

    /// Writes the file; under the lock, so that an older state never replaces a newer one.
    private func save() {
        let failure: ClientError? = state.withLock { state in
            state.lastWrite = ContinuousClock.now
            do throws(ClientError) {
                try state.progress.save(stateDirectory: stateDirectory)
                return nil
            } catch {
                defer { state.failed = true }
                return state.failed ? nil : error
            }
        }
        if let failure {
            warn("cannot keep the progress file for the page (\(failure)); the run goes on without it")
        }
    }
}
