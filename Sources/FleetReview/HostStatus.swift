public import FleetProtocol
public import ServerStore

/// Where a host stands, as `fleet status` shows it.
public enum HostState: String, Codable, Sendable, CaseIterable {
    /// It reported running the published generation.
    case upToDate = "up-to-date"
    /// A newer generation is published than it reported running, and it has not failed it (yet).
    case pending
    /// Its build or activation of the published generation failed (or it refused what it downloaded).
    case failed
    /// It activated the published generation, could not confirm it, and went back to the previous one.
    case rolledBack = "rolled-back"
    /// Nothing was heard from it for longer than `poll_interval_seconds` × `silent_after_intervals`.
    case silent
    /// Nothing was ever received from it.
    case neverSeen = "never-seen"
    /// Its newest configuration did not build on the server (the build gate), so it keeps the generation it has:
    /// shown instead of up to date, pending or never seen (a host's own failure, rollback or silence comes
    /// first); ``HostStatus/buildFailure`` says why.
    case buildFailed = "build-failed"
    /// Its newest run refused the manifest it was served as stale (expired: a stale mirror or a replay, see
    /// docs/deployment.md "Freeze protection"); it keeps what it runs. Back to normal once it sees a fresh one.
    case staleManifest = "stale-manifest"

    /// For tables: `up to date`, `rolled back`, `never seen`.
    public var words: String { rawValue.split(separator: "-").joined(separator: " ") }
}

/// One row of `fleet status` (and of `--json`, with these keys).
public struct HostStatus: Codable, Sendable, Equatable {
    public var host: String
    public var state: HostState
    /// The generation in the host's chroot manifest (what it fetches now), nil when none.
    public var publishedGeneration: UInt64?
    /// The generation it last reported running, nil when unknown.
    public var appliedGeneration: UInt64?
    /// When the server last received a valid report, log, heartbeat or confirmation from it (UTC).
    public var lastSeen: String?
    public var lastSeenSecondsAgo: Int64?
    /// The mirror through which it was last seen (`fleet mirror pull-logs`); nil: this server.
    public var lastSeenVia: String?
    /// Whether it said a reboot is needed to run its system (nil: it did not say).
    public var rebootNeeded: Bool?
    /// Why it failed, rolled back or is silent (host-written text: print it with ``TerminalText``).
    public var reason: String?
    /// The generation that failed or was rolled back, and is not retried until a newer one is published.
    public var failedGeneration: UInt64?
    /// The outcome of its last run (`unchanged`, `applied`, `failed`, `rolled-back`, `refused`, …).
    public var lastResult: String?
    /// The newest report ingested, by file name (`fleet logs` shows it).
    public var lastReport: String?
    public var silentAfterSeconds: Int
    /// How many problems with the host's uploads: refused files still in its `logs/`, and this run's warnings.
    public var warningCount: Int
    /// The warnings themselves, at most ``HostStatus/shownWarnings`` of them (host-written names are quoted).
    public var warnings: [String]
    /// How often it polls, in seconds, as it last said (else fleet.toml's): `silentAfterSeconds` is this many
    /// seconds times `silent_after_intervals`.
    public var pollIntervalSeconds: Int = 0
    /// The fleet-client version its newest report or heartbeat states; nil when that one states none (a
    /// client before 0.5.0) or nothing was received.
    public var clientVersion: String?
    /// Whether that client is older than this server by a major version (in 0.x a minor one:
    /// ``FleetVersion/isMajorVersionBehind(_:)``): it may not read what this server publishes.
    public var clientBehind: Bool = false
    /// Connection attempts that failed before its newest report or heartbeat got through (since it last reached
    /// the server): nil or 0 when it got through at once.
    public var failedConnectAttempts: Int?
    /// The host-local overlays its system runs on top of the fleet's (`fleet-client overlay`), as its newest
    /// applied report or heartbeat states them; nil without. Up to date means its base generation is the
    /// published one, overlays or not.
    public var overlays: [RunReport.Overlay]?

    /// The state for tables: `up to date (+2 overlays)` for a host running local overlays.
    public var stateWords: String {
        guard let count = overlays?.count, count > 0 else { return state.words }
        return "\(state.words) (+\(count) overlay\(count == 1 ? "" : "s"))"
    }

    /// The server its newest report or heartbeat says served that run: `primary` (this server) or a mirror's
    /// name (client.toml `[[servers]]`); nil when it states none (a client before mirrors, a run that reached
    /// no server). Not ``lastSeenVia``, which is where this server found the upload.
    public var server: String?
    /// The servers that run passed over, in the order it tried them, with why (host-written: print with
    /// ``TerminalText``); nil when none.
    public var skippedServers: [RunReport.SkippedServer]?

    /// Whether its newest report or heartbeat says it was served a stale manifest (shown as the state unless it
    /// is silent; ``reason`` says which, when it expired and which server served it).
    public var staleManifest: Bool = false

    /// The line `fleet status` prints under the table for a host whose client is a major version behind.
    public var clientWarning: String? {
        guard clientBehind, let clientVersion else { return nil }
        return "fleet-client \(clientVersion) is a major version behind this server (fleet \(FleetVersion.current)): "
            + "upgrade fleet-client on \(host)"
    }

    /// Its newest configuration, when it did not build on the server: the tree, when, why, the log.
    public var buildFailure: StateStore.BuildFailure?

    /// Shows the build gate's failure: as the state when the host has no problem of its own to show (up to date,
    /// pending, never seen), and as `buildFailure` always.
    mutating func mark(_ failure: StateStore.BuildFailure) {
        buildFailure = failure
        guard [.upToDate, .pending, .neverSeen].contains(state) else { return }
        state = .buildFailed
        reason =
            "its newest configuration did not build on the server at \(failure.failedAt), so it keeps generation "
            + "\(publishedGeneration.map(String.init) ?? "none"): \(failure.reason ?? "unknown reason") "
            + "(log: \(failure.log ?? "none"))"
    }

    public static let shownWarnings = 20
}
