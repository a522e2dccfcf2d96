public import ClientStateStore
import FleetFiles
public import FleetProtocol
import Foundation
import SFTPTransport

/// One `fleet-client run`, as the README tells it: take the lock, load the state, then finish an activation a
/// killed run left pending, or poll (connect, verify the manifest, decide, fetch the snapshot, build, activate,
/// confirm), report, save the state, and apply the reboot policy. Each step is its own type; this one only
/// says in which order they run and what each hands to the next.
///
/// Nothing is applied unless the manifest verifies (signature, host, no downgrade, no replay) and the snapshot
/// matches its size and hash and extracts safely. A failed build or activation leaves the previous system and
/// profile generation current, and the failed generation is not tried again until a newer one is published.
public struct ClientRun: Sendable {
    public let configuration: ClientConfiguration
    public let log: RunLog
    /// What time it is for every step: the system's, or a test's.
    public let clock: WallClock

    public init(configuration: ClientConfiguration, log: RunLog, clock: WallClock = .system) {
        self.configuration = configuration
        self.log = log
        self.clock = clock
    }

    var stateDirectory: StateDirectory { StateDirectory(path: configuration.stateDirectory, log: log) }
    var session: ServerSession { ServerSession(configuration: configuration, log: log) }
    var manifests: ManifestFetch { ManifestFetch(configuration: configuration, log: log) }
    var snapshots: SnapshotFetch { SnapshotFetch(log: log, clock: clock) }
    var activation: Activation { activation(via: session.endpoint) }
    var reporter: RunReporter { reporter(via: session.endpoint) }

    /// Activation whose confirmation connects to `endpoint` (the server the manifest came from), or failing
    /// that to client.toml's other servers in order.
    func activation(via endpoint: SSHEndpoint) -> Activation {
        Activation(
            configuration: configuration, endpoint: endpoint,
            otherEndpoints: session.servers.map(\.endpoint).filter { $0 != endpoint }, stateDirectory: stateDirectory,
            log: log, clock: clock)
    }

    /// A reporter whose new connections go to `endpoint`: the server the manifest came from.
    func reporter(via endpoint: SSHEndpoint) -> RunReporter {
        RunReporter(
            configuration: configuration, endpoint: endpoint, stateDirectory: stateDirectory, log: log, clock: clock)
    }
    var rebooter: Rebooter { Rebooter(configuration: configuration, log: log, clock: clock) }

    public func run() async throws(ClientError) -> RunResult {
        let lock: FileLock
        switch stateDirectory.lock() {
        case .next(let held): lock = held
        case .done(let result): return result
        }
        defer { withExtendedLifetime(lock) {} }
        stateDirectory.removeLeftovers()
        // From here on the page can follow this run, whoever started it.
        let progress = RunProgressRecorder(stateDirectory: stateDirectory.path, clock: clock) { [log] in
            log.phase($0)
        }
        log.record(into: progress)

        var run: (attempt: RunAttempt, result: RunResult, saved: Bool)
        do {
            run = try await runHoldingTheLock()
        } catch {
            progress.finish(error: error)
            throw error
        }
        progress.finish(run.result)
        // A state that could not be saved is no ground for a reboot.
        if run.saved { await rebooter.rebootIfDue(&run.attempt.state, stateDirectory: stateDirectory.path) }
        return run.result
    }

    /// Everything a run does once it holds the lock, up to saving the state.
    private func runHoldingTheLock() async throws(ClientError) -> (
        attempt: RunAttempt, result: RunResult, saved: Bool
    ) {
        let loaded = try ClientState.load(stateDirectory: stateDirectory.path)
        var attempt = RunAttempt(startedAt: clock.now(), state: loaded)
        let result: RunResult
        if let pending = try activation.pendingJournal() {
            result = await activation.resume(pending, &attempt)
            await reporter.reportOverNewConnection(result, &attempt)
        } else {
            result = await poll(&attempt)
        }

        if let tries = result.connectAttempts, result.outcome == .unreachable {
            attempt.state.failedConnectAttempts = (loaded.failedConnectAttempts ?? 0) + tries
        }
        attempt.state.lastResult = result.outcome
        attempt.state.lastReason = result.reason
        attempt.state.lastRunAt = UTCTime.iso(clock.now())
        attempt.state.lastServer = attempt.server
        attempt.state.rebootNeeded = rebooter.reason()
        do {
            try attempt.state.save(stateDirectory: stateDirectory.path, replacing: loaded)
        } catch {
            // What the run did stands (and was reported); that it cannot be remembered here needs a look.
            log.phase("\(result.outcome.rawValue): \(result.reason)")
            let failure = RunResult.localFailure("\(error)", generation: result.generation)
            log.phase("\(failure.outcome.rawValue): \(failure.reason)")
            return (attempt, failure, false)
        }
        log.phase("\(result.outcome.rawValue): \(result.reason)")
        return (attempt, result, true)
    }

    /// Fetches over the poll's connection to the first server (`[server]`, then the mirrors) that serves a usable
    /// manifest; then, with the connection closed, builds, activates and confirms, and reports over a new
    /// connection to that same server.
    private func poll(_ attempt: inout RunAttempt) async -> RunResult {
        let failedBefore = attempt.state.failedConnectAttempts ?? 0
        let polled = await session.withFailover { connection, contact in
            attempt.connectAttempts = contact.attempts
            // Reached: what failed before is told to the server now, and forgotten.
            attempt.failedConnectAttempts = failedBefore + contact.failedAttempts
            attempt.state.failedConnectAttempts = nil
            attempt.server = contact.server.name
            attempt.skippedServers = contact.skipped.isEmpty ? nil : contact.skipped
            return await fetch(over: connection, canSkip: contact.canSkip, &attempt)
        }
        attempt.skippedServers = polled.skipped.isEmpty ? nil : polled.skipped
        attempt.server = polled.server?.name
        let served = polled.server?.endpoint ?? session.endpoint
        if let server = polled.server, server.name != ClientConfiguration.primaryName {
            log.phase("served by mirror \(server.label)")
        }
        switch polled.step {
        case .done(let result):
            if polled.unreported { await reporter(via: served).reportAndHeartbeatOverNewConnection(result, &attempt) }
            return result
        case .next(let (manifest, tree)):
            let result = await activation(via: served).apply(manifest, tree: tree, &attempt)
            await reporter(via: served).reportOverNewConnection(result, &attempt)
            return result
        }
    }

    /// The part of a run that needs the poll's connection: manifest, outbox, decision, snapshot and cache.
    ///
    /// - Returns: the verified manifest and its extracted generation directory when there is something to
    ///   apply; otherwise the run's result (already reported, or a heartbeat written).
    ///
    /// - Parameter canSkip: whether another server remains: a manifest this server serves but the host cannot
    ///   use (none, stale, older than seen, not verifying) is then passed over without a word to this server, and
    ///   so is a server whose snapshot or cache does not match its manifest (``isTheServers(_:)``).
    private func fetch(over connection: SFTPConnection, canSkip: Bool, _ attempt: inout RunAttempt) async
        -> ServerVerdict<(Manifest, String)>
    {
        attempt.state.lastContactAt = UTCTime.iso(clock.now())

        let manifest: Manifest
        let draft = reporter.heartbeatDraft(attempt)
        let slot = RunReporter.heartbeatSlot(attempt)
        let manifestRead = await manifests.fetch(
            over: connection, lastSeen: attempt.state.lastSeen,
            expiryRequired: attempt.state.manifestsExpire ?? false, now: clock.now(), writingAhead: draft, into: slot)
        attempt.draftedSlot = draft == nil ? nil : slot
        attempt.heartbeatDraft = manifestRead.written
        switch manifestRead.step {
        case .next(let verified): manifest = verified
        case .done(let refusal):
            if canSkip {
                // Passed over: nothing of this run stays on that server, the heartbeat drafted ahead included.
                await reporter.discardHeartbeatDraft(&attempt, over: connection)
                return .skip(refusal)
            }
            // No other server left: this one's answer stands, and it gets what earlier runs kept, then this one's.
            await reporter.flushOutbox(over: connection)
            if refusal.outcome != .unchanged { await reporter.report(refusal, &attempt, over: connection) }
            await reporter.heartbeat(&attempt, over: connection, result: refusal)
            return .use(.done(refusal))
        }
        // The server is accepted (its manifest is usable): only now does it get the reports earlier runs kept. A
        // server passed over gets nothing of this host, not even those.
        await reporter.flushOutbox(over: connection)
        attempt.state.lastSeen = ManifestPolicy.Seen(manifest)
        if manifest.expiresAt != nil { attempt.state.manifestsExpire = true }

        // The run lock keeps the overlays as they are until this run ends; Activation builds with the same.
        let overlays: [Overlay]
        do { overlays = try OverlayStore(stateDirectory: stateDirectory.path).load() } catch {
            let failure = RunResult.localFailure(error.description, generation: manifest.generation)
            await reporter.heartbeat(&attempt, over: connection, result: failure)
            return .use(.done(failure))
        }
        if let nothingToDo = RunDecision.nothingToDo(
            manifest, state: attempt.state, overlays: OverlayStore.setDigest(overlays),
            protectPolicy: configuration.overlays.protectPolicy)
        {
            await reporter.heartbeat(&attempt, over: connection, result: nothingToDo)
            return .use(.done(nothingToDo))
        }

        // Something new: fetch it while connected; the build runs after the connection is closed.
        await reporter.discardHeartbeatDraft(&attempt, over: connection)
        var report = reporter.startReport(for: manifest, attempt)
        let placement = SnapshotFetch.Placement.generation(stateDirectory.generation(manifest.generation))
        let fetched = await snapshots.fetch(manifest, over: connection, into: placement, report: &report)
        attempt.report = report
        switch fetched {
        case .done(let refusal):
            if canSkip, Self.isTheServers(refusal) {
                return .skip(refusal, why: "snapshot of generation \(manifest.generation) unusable: \(refusal.reason)")
            }
            await reporter.report(refusal, &attempt, over: connection)
            return .use(.done(refusal))
        case .next(let tree):
            // Activation substitutes the toplevel from the cache only without overlays (with them it builds here),
            // so only then does the closure go into the store as it arrives.
            let substitution =
                overlays.isEmpty
                ? SubstitutionWhileDownloading(
                    system: NixSystem(configuration: configuration, stateDirectory: stateDirectory, log: log),
                    cache: stateDirectory.cache, trustedKey: configuration.fleetPublicKey.nixFormat, log: log) : nil
            if let failure = await snapshots.mirrorCache(
                of: manifest, into: stateDirectory, over: connection, substitution: substitution,
                report: &attempt.report)
            {
                if canSkip, Self.isTheServers(failure) {
                    return .skip(failure, why: "cache of generation \(manifest.generation) unusable: \(failure.reason)")
                }
                await reporter.report(failure, &attempt, over: connection)
                return .use(.done(failure))
            }
            return .use(.next((manifest, tree)))
        }
    }

    /// Whether a failed download is this server's doing (a snapshot or cache file that does not match its signed
    /// manifest, is missing, or broke off), not this host's (out of space, an unwritable state directory): then
    /// another server may serve the same generation intact, and the run tries it before giving up.
    static func isTheServers(_ failure: RunResult) -> Bool { failure.outcome != .localFailure }
}
