import FleetProtocol
import Foundation
import Inventory
import ServerStore

/// What a publish needs of the rollout when fleet.toml has rings: the run's name (its first new generation
/// starts a new rollout), the hosts' rows as the publish began, and the rings.
struct RolloutContext {
    let configuration: RolloutConfiguration
    let store: RolloutStore
    let rows: [String: RolloutStore.Host]
    let status: RolloutStore.Status?
    /// The newest ring that has the rollout, as the publish began.
    let ring: Int?
    /// This publish, as the rollout it may start records it.
    let run = UUID().uuidString

    /// nil without rings. Rings removed from fleet.toml end the rollout: what it staged is forgotten, and the
    /// publish reaches every host at once again.
    init?(configuration: FleetConfiguration, store: StateStore, dryRun: Bool) throws {
        let rollout = try RolloutStore(store)
        guard configuration.rollout.isEnabled else {
            if !dryRun, try !rollout.hosts().isEmpty { try rollout.clearHosts() }
            return nil
        }
        self.configuration = configuration.rollout
        self.store = rollout
        rows = Dictionary(uniqueKeysWithValues: try rollout.hosts().map { ($0.host, $0) })
        let state = try rollout.state()
        status = state?.status
        ring = state?.ring
    }

    /// The manifest staged for `host` and not yet in its chroot.
    func stagedManifest(of host: String) -> Manifest? {
        guard let row = rows[host], !row.delivered else { return nil }
        return try? Manifest.readUnverified(Array(row.manifest))
    }

    /// The generations whose snapshots must stay in `host`'s chroot: a staged one, and, while the rollout may
    /// still be aborted, the one the host had before.
    func keeping(_ host: String) throws -> Set<UInt64> {
        guard let row = try store.host(host) else { return [] }
        var kept: Set<UInt64> = row.delivered ? [] : [row.generation]
        let state = try store.state()?.status
        if let previous = row.previousGeneration, [.running, .halted, .aborting].contains(state) {
            kept.insert(previous)
        }
        return kept
    }

    /// Whether the rollout has reached `host`'s ring (and is not being aborted).
    func hasReached(_ host: HostName) -> Bool {
        guard let ring, let status, ![.aborting, .aborted].contains(status),
            let index = configuration.ringIndex(of: host)
        else { return false }
        return index <= ring
    }

    /// What a staged host's publish result says.
    func waitingNote(_ host: HostName, generation: UInt64) -> String {
        let ring = configuration.ringIndex(of: host).map { configuration.rings[$0].name } ?? "?"
        return "generation \(generation) is staged for ring \(ring): the host gets it when the rollout reaches its "
            + "ring (`fleet rollout status`)"
    }
}
