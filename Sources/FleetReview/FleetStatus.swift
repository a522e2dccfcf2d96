import FleetProtocol
import Inventory

/// Turns what was ingested into one ``HostStatus`` per host.
///
/// The newest of the host's heartbeat and its newest report (by the time the server received them) says what
/// it runs and how its last run ended; a failure is detailed by the newest failing report for that generation.
/// Then, in this order: never seen (nothing ever received), silent (nothing received for longer than its poll
/// interval × `silent_after_intervals`, the interval being the one it last reported, else fleet.toml's
/// `poll_interval_seconds`: a host that stops polling cannot report a failure, so this comes before everything
/// it said last), up to date (it runs the published generation), failed or rolled back (it gave up on the
/// published generation), else pending.
struct FleetStatus {
    let store: ReviewStore

    /// What the server published to each host: the chroot manifest's generation (what it fetches now), else
    /// the newest state.db knows.
    struct Published {
        var shown: UInt64?
        /// The highest generation known from either: what a report may be about.
        var highest: UInt64
    }

    func rows(
        hosts: [HostConfiguration], published: [String: Published], hostRows: [String: ReviewStore.HostRow],
        runWarnings: [String: [String]], now: Int64
    ) throws -> [HostStatus] {
        let heartbeats = try store.heartbeats()
        let reports = try store.latestReports()
        let refusals = try store.refusals()
        return try hosts.map { host in
            let name = host.name.value
            // This run's summary lines first (they count files), then each refused file.
            var warnings = runWarnings[name] ?? []
            warnings += (refusals[name] ?? []).map { "\($0.name): \($0.warning)" }
            let count = warnings.count
            if warnings.count > HostStatus.shownWarnings {
                let more = warnings.count - (HostStatus.shownWarnings - 1)
                warnings = Array(warnings.prefix(HostStatus.shownWarnings - 1)) + ["… and \(more) more"]
            }
            return try row(
                host: host, published: published[name]?.shown, heartbeat: heartbeats[name], report: reports[name],
                lastSeen: hostRows[name]?.lastSeen, lastSeenVia: hostRows[name]?.lastSeenVia, warnings: warnings,
                warningCount: count, now: now)
        }
    }

    func row(
        host: HostConfiguration, published: UInt64?, heartbeat: ReviewStore.HeartbeatRow?,
        report: ReviewStore.ReportRow?,
        lastSeen: Int64?, lastSeenVia: String? = nil, warnings: [String], warningCount: Int, now: Int64
    ) throws -> HostStatus {
        let name = host.name.value
        let interval = DeclaredPollInterval.judging(host, heartbeat: heartbeat, report: report)
        var status = HostStatus(
            host: name, state: .neverSeen, publishedGeneration: published, appliedGeneration: nil, lastSeen: nil,
            lastSeenSecondsAgo: nil, rebootNeeded: nil, reason: nil, failedGeneration: nil, lastResult: nil,
            lastReport: report?.name, silentAfterSeconds: interval.seconds * host.silentAfterIntervals,
            warningCount: warningCount, warnings: warnings, pollIntervalSeconds: interval.seconds)
        guard let lastSeen else { return status }
        let age = max(0, (now - lastSeen) / ReviewTime.nanosecondsPerSecond)
        status.lastSeen = UTCTime.iso(nanoseconds: lastSeen)
        status.lastSeenSecondsAgo = age
        status.lastSeenVia = lastSeenVia

        // What the newest word from the host says, by the time the server received it, whatever its kind: the
        // generation it runs is the one it stated then (a report's own, never an older heartbeat's).
        var failure: (generation: UInt64?, state: HostState, reason: String?)?
        // Whether that newest word is a stale manifest, and its reason: shown before everything but silence.
        var isStale = false
        var staleReason: String?
        if let report, report.received >= (heartbeat?.received ?? Int64.min) {
            status.clientVersion = report.clientVersion
            status.failedConnectAttempts = ConnectAttempts.failed(json: report.json)
            status.lastResult = report.state.rawValue
            status.rebootNeeded = report.rebootNeeded ?? heartbeat?.rebootNeeded
            status.appliedGeneration = report.appliedGeneration
            // A report about a run that applied nothing states what it tried; the heartbeat what runs.
            status.overlays = report.state == .applied ? OverlayList.read(json: report.json) : heartbeat?.overlays
            (status.server, status.skippedServers) = ServerList.read(json: report.json)
            switch report.state {
            case .applied:
                break
            case .failed, .rolledBack:
                failure = (report.generation, report.state == .failed ? .failed : .rolledBack, report.reason)
            case .refused:
                failure = (report.generation ?? published, .failed, report.reason.map { "refused: \($0)" })
            case .localFailure:
                status.appliedGeneration = report.previousGeneration ?? heartbeat?.appliedGeneration
                failure = localFailure(report, published: published)
            case .stale:
                (isStale, staleReason) = (true, report.reason)
            case .unchanged, .unreachable, .locked:
                if let generation = heartbeat?.failedGeneration { failure = try detail(name, generation, heartbeat) }
            }
        } else if let heartbeat {
            status.clientVersion = heartbeat.clientVersion
            status.failedConnectAttempts = heartbeat.failedConnectAttempts
            status.lastResult = heartbeat.lastResult?.rawValue
            status.rebootNeeded = heartbeat.rebootNeeded
            status.appliedGeneration = heartbeat.appliedGeneration
            status.overlays = heartbeat.overlays
            (status.server, status.skippedServers) = (heartbeat.server, heartbeat.skippedServers)
            if heartbeat.lastResult == .stale {
                (isStale, staleReason) = (true, heartbeat.reason)
            } else if heartbeat.lastResult == .refused {
                failure = (published, .failed, heartbeat.reason.map { "refused: \($0)" })
            } else if let generation = heartbeat.failedGeneration {
                failure = try detail(name, generation, heartbeat)
            }
        }
        status.failedGeneration = failure?.generation
        status.staleManifest = isStale
        // Checked at ingest: a stored version parses. A client that states none is unknown, not behind.
        if let version = status.clientVersion.flatMap(FleetVersion.init) {
            status.clientBehind = version.isMajorVersionBehind(FleetVersion.current)
        }

        let limit = Int64(status.silentAfterSeconds)
        if age > limit {
            status.state = .silent
            status.reason =
                "nothing received for \(ReviewTime.duration(seconds: age)) (silent after "
                + "\(ReviewTime.duration(seconds: limit)): \(host.silentAfterIntervals) × "
                + "\(interval.seconds) s polls, \(interval.source))"
        } else if isStale {
            status.state = .staleManifest
            status.reason = staleReason ?? "it was served a stale manifest"
        } else if let published, status.appliedGeneration == published {
            status.state = .upToDate
        } else if let failure, let published, failure.generation == published {
            status.state = failure.state
            status.reason = failure.reason
        } else {
            status.state = .pending
        }
        return status
    }

    /// A run stopped by the host itself (a full disk, a state directory it cannot write): shown as failed for
    /// the generation it was about, with a reason that says the fault is on the host, until a run gets past it.
    /// The host does not give up on that generation, so its next good run clears this.
    private func localFailure(_ report: ReviewStore.ReportRow, published: UInt64?) -> (
        generation: UInt64?, state: HostState, reason: String?
    ) {
        (report.generation ?? published, .failed, "local failure on the host: " + (report.reason ?? "no reason given"))
    }

    /// A failed generation named by a heartbeat: the report about it says how (failed or rolled back) and why.
    private func detail(
        _ host: String, _ generation: UInt64, _ heartbeat: ReviewStore.HeartbeatRow?
    ) throws -> (generation: UInt64?, state: HostState, reason: String?) {
        if let report = try store.failure(host: host, generation: generation) {
            let state: HostState = report.state == .rolledBack ? .rolledBack : .failed
            let reason = report.state == .refused ? report.reason.map { "refused: \($0)" } : report.reason
            return (generation, state, reason)
        }
        return (generation, .failed, heartbeat?.reason)
    }
}
