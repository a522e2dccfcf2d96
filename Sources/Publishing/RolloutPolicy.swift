import FleetProtocol
public import Inventory

/// What a host's own reports say of the generation a rollout brings it (worked out from `fleet status`'s view of
/// the host by the caller: this module does not read reports).
public enum RolloutHealth: Sendable, Equatable {
    /// It reported the generation applied and confirmed (rollback window passed, health checks passed).
    case confirmed
    /// Not yet: it has not fetched, applied or confirmed it.
    case waiting
    case failed(String)
    case rolledBack(String)
    case silent(String)

    /// Why it counts against the rollout, or nil when it does not.
    public var problem: String? {
        switch self {
        case .confirmed, .waiting: nil
        case .failed(let reason): "failed: \(reason)"
        case .rolledBack(let reason): "rolled back: \(reason)"
        case .silent(let reason): "silent: \(reason)"
        }
    }
}

/// The next step of a running rollout.
public enum RolloutDecision: Sendable, Equatable {
    /// The rollout is not running (halted, complete, aborted, or there is none).
    case idle
    /// Some hosts of the current ring have not confirmed yet (the soak, if it started, starts again).
    case waitForHosts(String)
    /// Every host of the current ring confirmed: the soak starts now.
    case startSoak
    /// The soak runs until `soak_seconds` have passed.
    case soak(String)
    /// The next ring gets the generation.
    case promote(to: Int)
    /// The last ring confirmed and soaked.
    case complete
    /// Too many hosts failed, rolled back or went silent in a ring that has the generation.
    case halt(host: String, reason: String)
}

/// The rollout's rule, a pure function of the rings, the rollout's state, its hosts, what they reported and the
/// time, so that every case is tested without a server.
///
/// A ring's hosts count once they have the generation (their manifest names it). Any ring that has it halts the
/// rollout when more of its hosts than its `max_failures` failed, rolled back or went silent (hosts whose failure
/// `resume` accepted excepted). The current ring is promoted when each of its other hosts confirmed it and then
/// `soak_seconds` passed; a ring none of whose hosts takes part passes at once.
public enum RolloutPolicy {
    public static func decide(
        rings: [RolloutConfiguration.Ring], state: RolloutStore.State?, hosts: [RolloutStore.Host],
        health: [String: RolloutHealth], now: Int64
    ) -> RolloutDecision {
        guard let state, state.status == .running, !rings.isEmpty else { return .idle }
        let current = min(max(state.ring, 0), rings.count - 1)
        func ring(of host: String) -> Int? { rings.firstIndex { $0.hosts.contains { $0.value == host } } }
        var failures = Array(repeating: [(host: String, problem: String)](), count: rings.count)
        for row in hosts where !row.waived && row.delivered {
            guard let index = ring(of: row.host), index <= current,
                let problem = health[row.host]?.problem
            else { continue }
            failures[index].append((row.host, problem))
        }
        for index in 0...current where failures[index].count > rings[index].maxFailures {
            let first = failures[index][0]
            let allowed = rings[index].maxFailures
            return .halt(
                host: first.host,
                reason: "ring \(rings[index].name): \(failures[index].count) of its hosts failed, rolled back or went "
                    + "silent (max_failures = \(allowed)); \(first.host) \(first.problem)")
        }
        let failing = Set(failures[current].map(\.host))
        let members = hosts.filter { ring(of: $0.host) == current && !$0.waived && !failing.contains($0.host) }
        let waiting = members.filter { !$0.delivered || health[$0.host] != .confirmed }
        let name = rings[current].name
        if !waiting.isEmpty {
            let names = waiting.prefix(5).map { "\($0.host) (generation \($0.generation))" }.joined(separator: ", ")
            return .waitForHosts(
                "ring \(name): waiting for \(names)\(waiting.count > 5 ? " and \(waiting.count - 5) more" : "") "
                    + "to report it applied and confirmed")
        }
        let next: RolloutDecision = current + 1 < rings.count ? .promote(to: current + 1) : .complete
        let soak = Int64(rings[current].soakSeconds)
        if members.isEmpty || soak == 0 { return next }
        guard let since = state.confirmedAt else { return .startSoak }
        let left = since + soak - now
        if left <= 0 { return next }
        return .soak("ring \(name): every host confirmed; soaking, \(left) s left of \(soak) s")
    }
}
