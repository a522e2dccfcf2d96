public import ClientStateStore
import FleetProtocol

/// `fleet-client status`: the local state, for people (``text``) and scripts (JSON).
public struct ClientStatus: Encodable, Sendable {
    public let host: String
    public let state: ClientState

    public init(host: String, state: ClientState) {
        self.host = host
        self.state = state
    }

    public var text: String {
        var lines = ["host:         \(host)"]
        if let applied = state.applied {
            lines.append(
                "applied:      generation \(applied.generation) (commit \(applied.sourceCommit), \(applied.operation)) at \(applied.at)"
            )
            lines.append("system:       \(applied.system)")
        } else {
            lines.append("applied:      nothing yet")
        }
        lines.append("seen:         " + (state.lastSeen.map { "generation \($0.generation)" } ?? "no manifest yet"))
        if let failed = state.failed {
            lines.append(
                "failed:       generation \(failed.generation) \(failed.state.rawValue) at \(failed.at): \(failed.reason)"
            )
        }
        lines.append(
            "last run:     " + (state.lastResult.map { "\($0.rawValue) at \(state.lastRunAt ?? "?")" } ?? "never")
                + (state.lastServer.map { ", served by \($0)" } ?? ""))
        if let reason = state.lastReason { lines.append("              \(reason)") }
        lines.append("last contact: \(state.lastContactAt ?? "never")")
        if let reboot = state.rebootNeeded { lines.append("reboot:       needed: \(reboot)") }
        return lines.joined(separator: "\n")
    }
}
