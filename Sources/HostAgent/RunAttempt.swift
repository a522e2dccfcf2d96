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
    /// The heartbeat slot a draft was sent to while the manifest was read (written whole or not): a poll that
    /// writes no heartbeat removes it (``RunReporter/discardHeartbeatDraft(_:over:)``).
    var draftedSlot: HeartbeatSlot?
    /// The draft, when it was written and closed into ``draftedSlot``: ``RunReporter/heartbeat(_:over:result:)``
    /// leaves it there if it is still the right heartbeat.
    var heartbeatDraft: Heartbeat?
}
