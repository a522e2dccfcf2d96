import ClientStateStore
import FleetProtocol
import Foundation

/// The mutable record of one run, handed from step to step: the state as it evolves and what goes into the
/// report.
struct RunAttempt {
    let startedAt: Date
    var state: ClientState
    var report: RunReport?
    /// How many tries this run's poll needed to connect.
    var connectAttempts: Int?
    /// Connection attempts that failed since the server was last reached, this run's included; told to the server
    /// in this run's heartbeat and report.
    var failedConnectAttempts: Int?
    /// The server this run's manifest came from and its uploads go to (`primary` or a mirror's name).
    var server: String?
    /// The servers this run passed over, with why; nil when none.
    var skippedServers: [RunReport.SkippedServer]?
    /// The heartbeat written and closed under its temporary name while the manifest was read, for
    /// ``RunReporter/heartbeat(_:over:result:)`` to rename into place if it is still the right one.
    var heartbeatDraft: Heartbeat?
}
