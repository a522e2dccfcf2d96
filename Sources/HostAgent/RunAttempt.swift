import ClientStateStore
import FleetProtocol
import Foundation

/// The mutable record of one run, handed from step to step: the state as it evolves and what goes into the
/// report.
struct RunAttempt {
    let startedAt: Date
    var state: ClientState
    var report: RunReport?
}
