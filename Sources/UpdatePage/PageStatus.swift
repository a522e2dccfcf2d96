import ClientStateStore
import FleetProtocol

/// The host's state as the page shows it, read from `state.json` at every request: a timer run may have
/// changed it since the last one. Display texts for the page, raw fields for scripts.
struct PageStatus: Encodable, Sendable {
    var host: String
    var appliedGeneration: UInt64?
    /// "generation 2 (commit 1a2b3c, switch) at …", or "nothing yet".
    var applied: String
    /// A ``FleetProtocol/RunOutcome`` raw value.
    var lastResult: String?
    var lastRunAt: String?
    /// "applied at …: reason", or "no run yet".
    var lastResultText: String
    var lastContactAt: String?
    /// When the server was last reached, or "never".
    var lastCheck: String
    /// Why the state could not be read, if it could not.
    var problem: String?

    init(host: String, stateDirectory: String) {
        self.host = host
        let state: ClientState
        do {
            state = try ClientState.load(stateDirectory: stateDirectory)
        } catch {
            state = ClientState()
            problem = error.description
        }
        appliedGeneration = state.applied?.generation
        if let applied = state.applied {
            // "none" is what a fleet repository outside git publishes.
            let known = !applied.sourceCommit.isEmpty && applied.sourceCommit != "none"
            let commit = known ? "commit \(applied.sourceCommit.prefix(12)), " : ""
            self.applied = "generation \(applied.generation) (\(commit)\(applied.operation)) at \(applied.at)"
        } else {
            applied = "nothing yet"
        }
        lastResult = state.lastResult?.rawValue
        lastRunAt = state.lastRunAt
        if let result = state.lastResult {
            let reason = state.lastReason.map { ": \($0)" } ?? ""
            lastResultText = "\(result.rawValue) at \(state.lastRunAt ?? "?")\(reason)"
        } else {
            lastResultText = "no run yet"
        }
        if let failed = state.failed {
            lastResultText += " (generation \(failed.generation) \(failed.state.rawValue); it waits for a newer one)"
        }
        lastContactAt = state.lastContactAt
        lastCheck = state.lastContactAt.map { "server reached at \($0)" } ?? "never"
    }
}
