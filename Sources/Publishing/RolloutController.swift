import FleetFiles
public import FleetHooks
public import FleetProtocol
public import Foundation
public import Inventory
public import ServerStore

/// Steers the rollout: gives each ring its staged manifests when the ring is reached, promotes or halts as
/// ``RolloutPolicy`` says from the hosts' reports, and carries out `fleet rollout resume`, `promote` and `abort`.
///
/// Every method writes chroots, so callers hold the publish lock (``Publisher/lock(stateDirectory:)``): a rollout
/// step and a publish never interleave. Each step is recorded before the chroot writes it leads to, and each
/// call first repeats the writes a killed one left undone, so a rollout survives `fleet` dying anywhere.
public struct RolloutController {
    public let configuration: FleetConfiguration
    let store: StateStore
    let rollout: RolloutStore

    /// What a step did: events for the hooks (already in state.db; fire them once the lock is released), and
    /// lines for the person.
    public struct Outcome: Sendable {
        public var events: [HookEvent] = []
        public var notes: [String] = []
        /// Whether a manifest may have been written into a host's chroot (a ring promoted, a host returned by an
        /// abort): what mirrors serve then changed too (`[server] push_mirrors`).
        public var changedChroots = false
    }

    public init(configuration: FleetConfiguration, store: StateStore) throws {
        self.configuration = configuration
        self.store = store
        rollout = try RolloutStore(store)
    }

    var rings: [RolloutConfiguration.Ring] { configuration.rollout.rings }

    func ring(of host: String) -> Int? { rings.firstIndex { $0.hosts.contains { $0.value == host } } }

    func layout(_ host: String) throws -> ChrootLayout {
        ChrootLayout(root: configuration.server.chrootRoot, host: try HostName(host))
    }

    /// The generation each host of the rollout is brought, by host name.
    public func generations() throws -> [String: UInt64] {
        Dictionary(uniqueKeysWithValues: try rollout.hosts().map { ($0.host, $0.generation) })
    }

    /// Delivers what is due and goes on ring by ring while the hosts' reports allow it; halts when they do not.
    public func advance(health: [String: RolloutHealth], now: Date) throws -> Outcome {
        var outcome = Outcome()
        try advance(health: health, now: now, into: &outcome)
        return outcome
    }

    func advance(health: [String: RolloutHealth], now: Date, into outcome: inout Outcome) throws {
        guard !rings.isEmpty, let state = try rollout.state() else { return }
        if state.status == .aborting {
            outcome.notes.append("an abort of the rollout did not finish: run `fleet rollout abort` again")
            return
        }
        // The rings it reached have their manifests, whatever it does next (a killed step left some undone).
        try deliver(upTo: state.ring, now: now, into: &outcome)
        let seconds = Int64(now.timeIntervalSince1970)
        for _ in 0...(rings.count + 1) {
            guard let state = try rollout.state() else { return }
            let decision = RolloutPolicy.decide(
                rings: rings, state: state, hosts: try rollout.hosts(), health: health, now: seconds)
            switch decision {
            case .idle:
                return
            case .waitForHosts(let why):
                if state.confirmedAt != nil { try rollout.update(confirmedAt: .some(nil), now: now) }
                outcome.notes.append(why)
                return
            case .startSoak:
                try rollout.update(confirmedAt: seconds, now: now)
            case .soak(let why):
                outcome.notes.append(why)
                return
            case .promote(let next):
                try rollout.update(ring: next, confirmedAt: .some(nil), now: now)
                FaultPoint.promoted.trigger(host: rings[next].name)
                try record(.rolloutPromoted, host: nil, detail: ["ring": rings[next].name])
                outcome.events.append(
                    HookEvent(
                        .rolloutPromoted, host: nil, at: UTCTime.iso(now),
                        reason: "ring \(rings[next].name) gets the rollout's generations",
                        details: ["ring": rings[next].name, "previousRing": rings[state.ring].name]))
                outcome.notes.append("promoted: ring \(rings[next].name) gets the rollout's generations")
                try deliver(upTo: next, now: now, into: &outcome)
            case .complete:
                try rollout.update(status: .complete, confirmedAt: .some(nil), now: now)
                outcome.notes.append("complete: every ring has the rollout's generations")
                return
            case .halt(let host, let reason):
                try rollout.update(status: .halted, haltedHost: host, reason: reason, now: now)
                let generation = try rollout.host(host)?.generation
                var detail = ["reason": reason, "ring": rings[ring(of: host) ?? state.ring].name]
                if let generation { detail["generation"] = String(generation) }
                try record(.rolloutHalted, host: host, detail: detail)
                outcome.events.append(
                    HookEvent(
                        .rolloutHalted, host: host, generation: generation, at: UTCTime.iso(now), reason: reason,
                        details: ["ring": detail["ring"] ?? ""]))
                outcome.notes.append(
                    "halted: \(reason); nothing more is published until `fleet rollout resume` (or abort, or a "
                        + "newer publish)")
                return
            }
        }
    }

    /// `fleet rollout resume`: accepts the failures that halted it and goes on.
    public func resume(health: [String: RolloutHealth], now: Date) throws -> Outcome {
        guard let state = try rollout.state(), state.status == .halted else {
            throw ServerStoreError(
                "the rollout is \(try rollout.state()?.status.rawValue ?? "not started"), not halted: nothing to resume"
            )
        }
        let accepted = try failing(health: health, upTo: state.ring)
        try rollout.update(
            status: .running, confirmedAt: .some(nil), haltedHost: .some(nil), reason: .some(nil), waive: accepted,
            now: now)
        try record(.rolloutResumed, host: nil, detail: ["accepted": accepted.joined(separator: ",")])
        var outcome = Outcome()
        outcome.notes.append(
            "resumed"
                + (accepted.isEmpty
                    ? "" : "; the failures of \(accepted.joined(separator: ", ")) no longer hold the rollout back"))
        try advance(health: health, now: now, into: &outcome)
        return outcome
    }

    /// `fleet rollout promote RING`: gives the named ring (and those before it) the generations now, whatever the
    /// hosts reported (their failures are accepted), then goes on as usual.
    public func promote(ringNamed name: String, health: [String: RolloutHealth], now: Date) throws -> Outcome {
        guard let index = configuration.rollout.ring(named: name) else {
            throw ServerStoreError(
                "\(configuration.file): no ring \(quoted(name)) in [[rollout.rings]] (rings: "
                    + "\(rings.map(\.name).joined(separator: ", ")))")
        }
        guard let state = try rollout.state(), [.running, .halted].contains(state.status) else {
            throw ServerStoreError(
                "the rollout is \(try rollout.state()?.status.rawValue ?? "not started"): nothing to promote")
        }
        guard index > state.ring else {
            throw ServerStoreError(
                "ring \(name) already has the rollout's generations (the rollout is at ring "
                    + "\(rings[min(state.ring, rings.count - 1)].name))")
        }
        let accepted = try failing(health: health, upTo: state.ring)
        try rollout.update(
            ring: index, status: .running, confirmedAt: .some(nil), haltedHost: .some(nil), reason: .some(nil),
            waive: accepted, now: now)
        FaultPoint.promoted.trigger(host: name)
        try record(.rolloutPromoted, host: nil, detail: ["ring": name, "by": "fleet rollout promote"])
        var outcome = Outcome()
        outcome.events.append(
            HookEvent(
                .rolloutPromoted, host: nil, at: UTCTime.iso(now), reason: "promoted by `fleet rollout promote`",
                details: ["ring": name, "previousRing": rings[min(state.ring, rings.count - 1)].name]))
        outcome.notes.append("promoted: ring \(name) gets the rollout's generations")
        try deliver(upTo: index, now: now, into: &outcome)
        try advance(health: health, now: now, into: &outcome)
        return outcome
    }

    /// `fleet rollout abort`: every host that got the rollout's generation gets its previous configuration again,
    /// as a new, higher generation (so that no host refuses it as a downgrade); the hosts still waiting for it
    /// never see it. Running it again after it was killed finishes it.
    public func abort(signingKey: SigningKey, now: Date) throws -> Outcome {
        guard let state = try rollout.state(), [.running, .halted, .aborting].contains(state.status) else {
            throw ServerStoreError(
                "the rollout is \(try rollout.state()?.status.rawValue ?? "not started"): nothing to abort"
                    + " (to undo a complete rollout, publish the previous configuration)")
        }
        try rollout.update(status: .aborting, now: now)
        var outcome = Outcome()
        for row in try rollout.hosts() {
            guard row.delivered else {
                try rollout.remove(row.host)
                outcome.notes.append("\(row.host): never had generation \(row.generation); it keeps what it has")
                continue
            }
            outcome.changedChroots = true
            guard let note = try revert(row, signingKey: signingKey, now: now) else { continue }
            outcome.notes.append(note)
        }
        try rollout.clearHosts()
        try rollout.update(status: .aborted, confirmedAt: .some(nil), now: now)
        try record(.rolloutAborted, host: nil, detail: [:])
        outcome.notes.append(
            "aborted; the next `fleet publish` starts a new rollout if the repository still differs from what the "
                + "hosts have")
        return outcome
    }

    /// Gives `row`'s host its previous generation's content as a new generation; nil when it already has.
    func revert(_ row: RolloutStore.Host, signingKey: SigningKey, now: Date) throws -> String? {
        let layout = try layout(row.host)
        let current = HostPlan.currentManifest(layout).manifest
        guard current?.generation == row.generation else { return nil }
        guard let hostConfiguration = configuration.host(named: row.host), let previous = row.previousGeneration,
            let publication = try store.publications(of: layout.host).first(where: { $0.generation == previous }),
            let status = try FileStatus.of(layout.snapshot(previous)), status.kind == .regular,
            status.size == publication.snapshotSize
        else {
            return "\(row.host): no previous generation to return to (or its snapshot is gone); it keeps "
                + "generation \(row.generation)"
        }
        let generation: UInt64
        switch try Publisher.nextGeneration(layout, current: current, store: store) {
        case .success(let next): generation = next
        case .failure(let error): throw error
        }
        let bytes = try FileIO.read(layout.snapshot(previous))
        guard SHA256Hasher.hex(bytes) == publication.snapshotSHA256 else {
            return "\(row.host): the snapshot of generation \(previous) no longer matches its record; it keeps "
                + "generation \(row.generation)"
        }
        try FileIO.writeAtomically(
            bytes, to: layout.snapshot(generation), mode: ChrootLayout.snapshotFileMode, owner: status.owner,
            group: status.group)
        let manifest = Manifest(
            host: layout.host, generation: generation, publishedAt: UTCTime.iso(now),
            sourceCommit: publication.sourceCommit,
            snapshot: .init(
                path: ChrootLayout.snapshotPathInChroot(generation), size: publication.snapshotSize,
                sha256: publication.snapshotSHA256),
            contentDigest: publication.contentDigest, operation: hostConfiguration.operation,
            attribute: hostConfiguration.attribute, toplevel: publication.toplevel, hasCache: publication.hasCache,
            expiresAt: Manifest.expiry(ttlSeconds: configuration.server.manifestTTLSeconds, now: now))
        try store.record(
            .init(
                host: layout.host, generation: generation, publishedAt: manifest.publishedAt,
                sourceCommit: publication.sourceCommit, contentDigest: publication.contentDigest,
                snapshotSHA256: publication.snapshotSHA256, snapshotSize: publication.snapshotSize,
                files: publication.files, bytes: publication.bytes, toplevel: publication.toplevel,
                hasCache: publication.hasCache))
        try FileIO.writeAtomically(
            try manifest.signed(with: signingKey), to: layout.manifest, mode: 0o644, owner: 0, group: 0)
        FaultPoint.manifestRenamed.trigger(host: row.host)
        try record(
            .rolloutAborted, host: layout.host.value,
            detail: ["generation": String(generation), "returnsTo": String(previous), "from": String(row.generation)])
        return "\(row.host): generation \(generation) returns it to generation \(previous)'s configuration "
            + "(it had \(row.generation))"
    }

    /// Writes the staged manifests of the rings up to `ring` into their chroots; a row that something newer
    /// superseded is dropped instead. A staged manifest was signed when it was staged, maybe days ago: one with
    /// less than half its TTL left is re-signed first (with the key in the state directory), so a ring reached
    /// after a long soak does not get manifests its hosts refuse as stale.
    func deliver(upTo ring: Int, now: Date, into outcome: inout Outcome) throws {
        var signingKey: Result<SigningKey, any Error>?
        for row in try rollout.hosts() where !row.delivered {
            guard let index = self.ring(of: row.host), index <= ring else { continue }
            let layout = try layout(row.host)
            let current = HostPlan.currentManifest(layout).manifest?.generation ?? 0
            if current == row.generation {
                // Written by a step killed before it said so.
                try rollout.markDelivered(row.host, generation: row.generation)
                continue
            }
            guard current < row.generation else {
                try rollout.remove(row.host)
                outcome.notes.append(
                    "\(row.host): generation \(row.generation) is superseded by \(current); dropped from the rollout")
                continue
            }
            var manifest = row.manifest
            let ttl = configuration.server.manifestTTLSeconds
            if let staged = try? Manifest.readUnverified(manifest), staged.needsRenewal(ttlSeconds: ttl, now: now) {
                if signingKey == nil {
                    signingKey = Result { try SigningKeyFile.load(stateDirectory: configuration.server.stateDirectory) }
                }
                switch signingKey {
                case .success(let key):
                    let fresh = Publisher.fresh(manifest, signingKey: key, ttlSeconds: ttl, now: now)
                    manifest = fresh.manifest
                    if let problem = fresh.problem { outcome.notes.append("\(row.host): \(problem)") }
                case .failure(let error):
                    outcome.notes.append(
                        "\(row.host): its staged manifest expires at \(staged.expiresAt ?? "no time") and could not be "
                            + "re-signed (\(error)); `fleet publish --refresh` re-signs it")
                case nil: break
                }
            }
            try FileIO.writeAtomically(manifest, to: layout.manifest, mode: 0o644, owner: 0, group: 0)
            outcome.changedChroots = true
            FaultPoint.delivered.trigger(host: row.host)
            try rollout.markDelivered(row.host, generation: row.generation)
        }
    }

    /// The hosts, in rings up to `ring`, whose reports count against the rollout now.
    func failing(health: [String: RolloutHealth], upTo ring: Int) throws -> [String] {
        try rollout.hosts().filter { row in
            row.delivered && !row.waived && (self.ring(of: row.host).map { $0 <= ring } ?? false)
                && health[row.host]?.problem != nil
        }.map(\.host)
    }

    func record(_ kind: EventKind, host: String?, detail: [String: String]) throws {
        try store.recordEvent(host: host.flatMap { try? HostName($0) }, kind: kind, detail: detail)
    }

    /// Where the rollout stands, for `fleet rollout status` and `fleet status`.
    public func report(health: [String: RolloutHealth], now: Date) throws -> RolloutReport {
        let state = try rollout.state()
        let rows = try rollout.hosts()
        let decision = RolloutPolicy.decide(
            rings: rings, state: state, hosts: rows, health: health, now: Int64(now.timeIntervalSince1970))
        let reached = state.map { min($0.ring, rings.count - 1) } ?? -1
        return RolloutReport(
            status: state?.status.rawValue ?? "none",
            ring: state.flatMap {
                rings.indices.contains(min($0.ring, rings.count - 1)) ? rings[min($0.ring, rings.count - 1)].name : nil
            },
            startedAt: state?.startedAt, haltedHost: state?.haltedHost, reason: state?.reason,
            next: RolloutReport.describe(decision),
            rings: rings.enumerated().map { index, ring in
                .init(
                    name: ring.name, hosts: ring.hosts.map(\.value), soakSeconds: ring.soakSeconds,
                    maxFailures: ring.maxFailures, reached: index <= reached)
            },
            hosts: rows.map { row in
                .init(
                    host: row.host, ring: ring(of: row.host).map { rings[$0].name }, generation: row.generation,
                    previousGeneration: row.previousGeneration, delivered: row.delivered, waived: row.waived,
                    health: RolloutReport.words(health[row.host], delivered: row.delivered))
            })
    }
}

/// Where a rollout stands (`fleet rollout status --json`, and `rollout` in `fleet status --json`).
public struct RolloutReport: Codable, Sendable, Equatable {
    public struct Ring: Codable, Sendable, Equatable {
        public var name: String
        public var hosts: [String]
        public var soakSeconds: Int
        public var maxFailures: Int
        /// Whether it has the rollout's generations.
        public var reached: Bool
    }

    public struct Host: Codable, Sendable, Equatable {
        public var host: String
        public var ring: String?
        public var generation: UInt64
        public var previousGeneration: UInt64?
        /// Its manifest names the generation (its ring was reached).
        public var delivered: Bool
        /// `resume` or `promote` accepted its failure.
        public var waived: Bool
        /// `staged`, `waiting`, `confirmed`, `failed: …`, `rolled back: …`, `silent: …`.
        public var health: String
    }

    /// `none`, `running`, `halted`, `complete`, `aborting`, `aborted`.
    public var status: String
    /// The newest ring that has the generations.
    public var ring: String?
    public var startedAt: String?
    public var haltedHost: String?
    public var reason: String?
    /// What it waits for (a running rollout).
    public var next: String?
    public var rings: [Ring]
    public var hosts: [Host]

    static func describe(_ decision: RolloutDecision) -> String? {
        switch decision {
        case .idle: nil
        case .waitForHosts(let why), .soak(let why): why
        case .startSoak: "every host of the ring confirmed: the soak starts"
        case .promote(let index): "promotes to ring #\(index + 1) at the next check"
        case .complete: "completes at the next check"
        case .halt(let host, let reason): "halts at the next check (\(host)): \(reason)"
        }
    }

    static func words(_ health: RolloutHealth?, delivered: Bool) -> String {
        guard delivered else { return "staged" }
        switch health {
        case nil, .waiting: return "waiting"
        case .confirmed: return "confirmed"
        case .failed, .rolledBack, .silent: return health?.problem ?? ""
        }
    }
}
