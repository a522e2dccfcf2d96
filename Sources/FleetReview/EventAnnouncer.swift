import FleetHooks
import FleetProtocol
import Inventory
import ServerStore

/// Turns status changes into events, each once: recorded in state.db's `events` table and handed to the hooks.
///
/// `review_hosts` remembers, per host, the last generation announced as applied, the last failure announced
/// (state and generation) and whether the host was announced silent. So `host-applied` fires once per applied
/// generation, `host-failed`/`host-rolled-back` once per failed generation, `host-silent` once per silence (again
/// only after the host was heard from in between), `host-stale` once per time a host is found served a stale
/// manifest (again only after it was up to date, pending or failed in between), however often `fleet status` runs. A host whose first
/// status is computed fires what it is in (e.g. `host-applied` for its current generation), once.
struct EventAnnouncer {
    let store: ReviewStore
    let stateStore: StateStore

    /// What `announced_failure` holds while a host's stale manifest was announced (failures hold `state:generation`).
    static let staleMarker = "stale-manifest"

    func announce(_ rows: [HostStatus], hostRows: [String: ReviewStore.HostRow], now: Int64) throws -> [HookEvent] {
        let at = UTCTime.iso(nanoseconds: now)
        var events: [HookEvent] = []
        for row in rows {
            let before = hostRows[row.host]
            var applied = before?.announcedApplied
            var failure = before?.announcedFailure
            var silent = before?.announcedSilent ?? false
            var event: HookEvent?
            switch row.state {
            case .upToDate:
                silent = false
                if failure == Self.staleMarker { failure = nil }
                if let generation = row.appliedGeneration, generation != applied {
                    var details: [String: String] = [:]
                    if let applied { details["previousGeneration"] = String(applied) }
                    if let report = row.lastReport { details["report"] = report }
                    if let reboot = row.rebootNeeded { details["rebootNeeded"] = reboot ? "true" : "false" }
                    event = HookEvent(.hostApplied, host: row.host, generation: generation, at: at, details: details)
                    applied = generation
                }
            case .failed, .rolledBack:
                silent = false
                let key = "\(row.state.rawValue):\(row.failedGeneration.map(String.init) ?? "-")"
                if key != failure {
                    var details: [String: String] = [:]
                    if let current = row.appliedGeneration { details["appliedGeneration"] = String(current) }
                    if let report = row.lastReport { details["report"] = report }
                    event = HookEvent(
                        row.state == .failed ? .hostFailed : .hostRolledBack, host: row.host,
                        generation: row.failedGeneration, at: at, reason: row.reason, details: details)
                    failure = key
                }
            case .silent:
                if !silent {
                    event = HookEvent(
                        .hostSilent, host: row.host, generation: row.appliedGeneration, at: at, reason: row.reason,
                        details: ["lastSeen": row.lastSeen ?? "", "silentAfterSeconds": String(row.silentAfterSeconds)])
                    silent = true
                }
            case .staleManifest:
                silent = false
                // Kept where the last failure announced is: a host stale again after it was up to date (or
                // failed) is announced again, one that stays stale only once.
                if failure != Self.staleMarker {
                    var details: [String: String] = [:]
                    if let current = row.appliedGeneration { details["appliedGeneration"] = String(current) }
                    if let report = row.lastReport { details["report"] = report }
                    if let server = row.server { details["server"] = server }
                    event = HookEvent(
                        .hostStale, host: row.host, generation: row.appliedGeneration, at: at, reason: row.reason,
                        details: details)
                    failure = Self.staleMarker
                }
            case .pending:
                silent = false
                if failure == Self.staleMarker { failure = nil }
            case .neverSeen, .buildFailed:
                // `build-failed` was announced by the publish that found it (and status marks it after this).
                break
            }
            if let event {
                events.append(event)
                var detail = event.details
                if let generation = event.generation { detail["generation"] = String(generation) }
                if let reason = event.reason { detail["reason"] = reason }
                try stateStore.recordEvent(host: try? HostName(row.host), kind: event.event.eventKind, detail: detail)
            }
            if applied != before?.announcedApplied || failure != before?.announcedFailure
                || silent != (before?.announcedSilent ?? false)
            {
                try store.saveAnnounced(host: row.host, applied: applied, failure: failure, silent: silent)
            }
        }
        return events
    }
}

extension HookEventKind {
    /// How state.db's `events` table names it (the same words).
    var eventKind: EventKind {
        switch self {
        case .published: .published
        case .buildFailed: .buildFailed
        case .hostApplied: .hostApplied
        case .hostFailed: .hostFailed
        case .hostRolledBack: .hostRolledBack
        case .hostSilent: .hostSilent
        case .hostStale: .hostStale
        case .updatePublished: .updatePublished
        case .updateFailed: .updateFailed
        case .rolloutHalted: .rolloutHalted
        case .rolloutPromoted: .rolloutPromoted
        }
    }
}
