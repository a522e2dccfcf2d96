import FleetFiles
public import FleetHooks
import FleetProtocol
public import Inventory
import SQLiteKit
import ServerStore

/// The review side in one call: ingest what hosts uploaded, compute each host's status, record and fire the
/// events that are new. `fleet status`, `logs` and `metrics` are thin layers over this.
///
/// Refreshes are serialized by `<state_dir>/review.lock` (two `fleet status --watch` or a status and a metrics
/// timer must not ingest or announce the same file twice); the hooks run after the lock is released.
public final class Review {
    public let configuration: FleetConfiguration
    public let limits: IngestLimits
    /// state.db, which both stores below are views over.
    let database: StateDatabase
    let stateStore: StateStore
    let store: ReviewStore
    let hooks: HookRunner

    public static let lockName = "review.lock"

    /// What one refresh found.
    public struct Snapshot: Sendable {
        public var hosts: [HostStatus]
        public var ingest: IngestSummary
        /// Events announced by this refresh (already recorded and given to the hooks).
        public var events: [HookEvent]
        /// When it was computed (nanoseconds since the epoch).
        public var at: Int64
    }

    public init(
        configuration: FleetConfiguration, limits: IngestLimits = IngestLimits(),
        hookLog: @escaping @Sendable (String) -> Void = HookRunner.standardError
    ) throws(ReviewError) {
        self.configuration = configuration
        self.limits = limits
        do {
            try FileIO.createDirectories(configuration.server.stateDirectory, mode: 0o700)
            database = try StateDatabase(stateDirectory: configuration.server.stateDirectory)
            stateStore = try StateStore(database)
            store = try ReviewStore(database)
        } catch {
            throw ReviewError("cannot open \(configuration.server.stateDirectory)/\(StateDatabase.fileName): \(error)")
        }
        hooks = HookRunner(configuration, log: hookLog)
    }

    /// The hosts named (all when `names` is empty); an unknown name is an error naming it.
    public func hosts(_ names: [String], roles: [String] = []) throws(ReviewError) -> [HostConfiguration] {
        do {
            return try configuration.selecting(names, roles: roles)
        } catch {
            throw ReviewError(error.description)
        }
    }

    /// Ingests the hosts' new uploads, computes their status, announces what changed.
    ///
    /// - Parameter now: the time statuses are computed at (nanoseconds since the epoch); tests move it.
    /// - Parameter mirrors: mirrors' `logs/` pulled here (`fleet mirror pull-logs`), ingested after the hosts' own.
    public func refresh(_ hosts: [HostConfiguration], now: Int64? = nil, mirrors: [MirrorLogs] = [])
        async throws(ReviewError) -> Snapshot
    {
        let snapshot: Snapshot
        do {
            let lockPath = configuration.server.stateDirectory + "/" + Self.lockName
            let locked = try FileLock.withLock(lockPath, wait: true) { () throws -> Snapshot in
                let published = try publishedGenerations(hosts)
                let ingest = try ReportIngest(configuration: configuration, store: store, limits: limits)
                    .run(hosts: hosts, published: published.mapValues(\.highest), mirrors: mirrors)
                let at = now ?? ReviewTime.now()
                let hostRows = try store.hostRows()
                var rows = try FleetStatus(store: store).rows(
                    hosts: hosts, published: published, hostRows: hostRows, runWarnings: ingest.warnings, now: at)
                let events = try database.transaction {
                    try EventAnnouncer(store: store, stateStore: stateStore).announce(
                        rows, hostRows: hostRows, now: at)
                }
                // After the announcement: the host's own events do not depend on the server's builds.
                let buildFailures = try stateStore.buildFailures()
                for index in rows.indices {
                    if let failure = buildFailures[rows[index].host] { rows[index].mark(failure) }
                }
                return Snapshot(hosts: rows, ingest: ingest, events: events, at: at)
            }
            guard let locked else { throw ReviewError("cannot take \(lockPath)") }
            snapshot = locked
        } catch let error as ReviewError {
            throw error
        } catch {
            throw ReviewError("\(error)")
        }
        await hooks.fire(snapshot.events)
        return snapshot
    }

    /// A host's newest runs (reports and their logs), oldest first; only those after `id` when given.
    public func runs(of host: HostConfiguration, last count: Int, after id: Int64 = 0) throws(ReviewError)
        -> [RunRecord]
    {
        do {
            return try store.reports(host: host.name.value, last: count, after: id).map { report in
                let log = try report.logName.flatMap { try store.log(host: host.name.value, name: $0) }
                return RunRecord(report, log: log)
            }
        } catch {
            throw ReviewError("\(error)")
        }
    }

    /// `build-failed` events per host (0 when none).
    public func buildFailures() throws(ReviewError) -> [String: Int] {
        do { return try stateStore.eventCounts(.buildFailed) } catch { throw ReviewError("\(error)") }
    }

    private func publishedGenerations(_ hosts: [HostConfiguration]) throws -> [String: FleetStatus.Published] {
        let recorded = try stateStore.lastGenerations()
        var result: [String: FleetStatus.Published] = [:]
        for host in hosts {
            let layout = ChrootLayout(root: configuration.server.chrootRoot, host: host.name)
            let manifest = (try? FileIO.readNoFollow(layout.manifest, limit: Manifest.sizeLimit))
                .flatMap { try? Manifest.readUnverified($0) }
            let fromState = recorded[host.name.value].flatMap { $0 > 0 ? $0 : nil }
            let shown = manifest?.generation ?? fromState
            result[host.name.value] = .init(shown: shown, highest: max(manifest?.generation ?? 0, fromState ?? 0))
        }
        return result
    }
}
