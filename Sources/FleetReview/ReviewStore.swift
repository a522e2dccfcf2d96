import FleetFiles
import FleetProtocol
import Inventory
import SQLiteKit
import ServerStore

/// The review side's tables in state.db (created by its own ``migrations``, as component `review`):
///
/// - `reports`: every report ingested (validated fields, and the JSON as received), newest `report_history`
///   per host.
/// - `run_logs`: the full logs (capped: first and last bytes), newest `report_history` per host.
/// - `heartbeats`: the newest heartbeat of each host.
/// - `ingest_files`: every file of a host's `logs/` that was examined and is still there: its identity, whether
///   it was ingested or refused, and the warning if refused. This is what makes ingest incremental.
/// - `review_hosts`: per host, a digest of the report and log names already examined (so an unchanged `logs/`
///   costs one directory listing), when the host was last heard from, and which events were announced.
final class ReviewStore {
    /// state.db's connection (``ServerStore/StateDatabase``), shared with ``ServerStore/StateStore`` so that an
    /// announcement and its event are one transaction.
    let database: SQLiteDatabase

    /// One schema change per entry, applied in order; never edit a shipped entry, append a new one.
    static let migrations = [
        // 1: `IF NOT EXISTS`: databases made before the review owned its tables got them from StateStore.
        """
        CREATE TABLE IF NOT EXISTS reports (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            host TEXT NOT NULL,
            name TEXT NOT NULL,
            received_ns INTEGER NOT NULL,
            state TEXT NOT NULL,
            generation INTEGER,
            previous_generation INTEGER,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            duration REAL NOT NULL,
            reboot_needed INTEGER,
            reason TEXT,
            log_name TEXT,
            json TEXT NOT NULL,
            UNIQUE (host, name)
        );
        CREATE INDEX IF NOT EXISTS reports_by_host ON reports (host, id);
        CREATE TABLE IF NOT EXISTS run_logs (
            host TEXT NOT NULL,
            name TEXT NOT NULL,
            received_ns INTEGER NOT NULL,
            size INTEGER NOT NULL,
            text BLOB NOT NULL,
            PRIMARY KEY (host, name)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS heartbeats (
            host TEXT PRIMARY KEY,
            received_ns INTEGER NOT NULL,
            at TEXT NOT NULL,
            applied_generation INTEGER,
            seen_generation INTEGER,
            failed_generation INTEGER,
            last_result TEXT,
            reason TEXT,
            reboot_needed INTEGER,
            json TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS ingest_files (
            host TEXT NOT NULL,
            name TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            ingested INTEGER NOT NULL,
            warning TEXT,
            PRIMARY KEY (host, name)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS ingest_files_warnings ON ingest_files (host) WHERE warning IS NOT NULL;
        CREATE TABLE IF NOT EXISTS review_hosts (
            host TEXT PRIMARY KEY,
            listing_digest TEXT,
            last_seen_ns INTEGER,
            announced_applied INTEGER,
            announced_failure TEXT,
            announced_silent INTEGER NOT NULL DEFAULT 0
        );
        """,
        // 2: the fleet-client version each report and heartbeat states (NULL: a client before 0.5.0 said none).
        """
        ALTER TABLE reports ADD COLUMN client_version TEXT;
        ALTER TABLE heartbeats ADD COLUMN client_version TEXT;
        """,
        // 3: through which mirror the host was last seen (NULL: this server). Rows keyed `<host>@<mirror>` keep a
        // mirror's pulled listing apart from the host's own `logs/`.
        """
        ALTER TABLE review_hosts ADD COLUMN last_seen_via TEXT;
        """,
    ]

    init(_ database: StateDatabase) throws {
        self.database = database.connection
        try self.database.migrate(component: "review", Self.migrations)
    }

    // MARK: - Bookkeeping

    /// One examined file of a host's `logs/`.
    struct BookkeptFile: Equatable {
        var identity: FileIdentity
        var ingested: Bool
        var warning: String?
    }

    /// The per-host row of `review_hosts`.
    struct HostRow: Equatable {
        var listingDigest: String?
        var lastSeen: Int64?
        /// The mirror it was last seen through; nil: this server.
        var lastSeenVia: String?
        var announcedApplied: UInt64?
        var announcedFailure: String?
        var announcedSilent: Bool
    }

    func hostRows() throws -> [String: HostRow] {
        var rows: [String: HostRow] = [:]
        for row in try database.query("SELECT * FROM review_hosts") {
            guard let host = row["host"].text else { continue }
            rows[host] = HostRow(
                listingDigest: row["listing_digest"].text, lastSeen: row["last_seen_ns"].integer,
                lastSeenVia: row["last_seen_via"].text,
                announcedApplied: Generation.stored(row["announced_applied"].integer),
                announcedFailure: row["announced_failure"].text,
                announcedSilent: (row["announced_silent"].integer ?? 0) != 0)
        }
        return rows
    }

    func saveListing(host: String, digest: String?, lastSeen: Int64?) throws {
        try database.query(
            """
            INSERT INTO review_hosts (host, listing_digest, last_seen_ns) VALUES (?, ?, ?)
            ON CONFLICT(host) DO UPDATE SET listing_digest = excluded.listing_digest,
                last_seen_via = CASE WHEN excluded.last_seen_ns > coalesce(last_seen_ns, excluded.last_seen_ns - 1)
                    THEN NULL ELSE last_seen_via END,
                last_seen_ns = max(coalesce(last_seen_ns, excluded.last_seen_ns),
                    coalesce(excluded.last_seen_ns, last_seen_ns))
            """, [.text(host), digest.map { .text($0) } ?? .null, lastSeen.map { .integer($0) } ?? .null])
    }

    /// A host heard from through a mirror (`via`): its last-seen time moves forward, and says through which.
    func saveLastSeen(host: String, _ lastSeen: Int64, via mirror: String) throws {
        try database.query(
            """
            INSERT INTO review_hosts (host, last_seen_ns, last_seen_via) VALUES (?, ?, ?)
            ON CONFLICT(host) DO UPDATE SET
                last_seen_via = CASE WHEN excluded.last_seen_ns > coalesce(last_seen_ns, excluded.last_seen_ns - 1)
                    THEN excluded.last_seen_via ELSE last_seen_via END,
                last_seen_ns = max(coalesce(last_seen_ns, excluded.last_seen_ns), excluded.last_seen_ns)
            """, [.text(host), .integer(lastSeen), .text(mirror)])
    }

    /// The bookkeeping key of a host's `logs/` as pulled from a mirror: `@` is in no host or mirror name, so it
    /// is never a host's own key.
    static func bookkeepingKey(host: String, mirror: String?) -> String {
        mirror.map { host + "@" + $0 } ?? host
    }

    func saveAnnounced(host: String, applied: UInt64?, failure: String?, silent: Bool) throws {
        try database.query(
            """
            INSERT INTO review_hosts (host, announced_applied, announced_failure, announced_silent) VALUES (?, ?, ?, ?)
            ON CONFLICT(host) DO UPDATE SET announced_applied = excluded.announced_applied,
                announced_failure = excluded.announced_failure, announced_silent = excluded.announced_silent
            """,
            [
                .text(host), applied.map { .integer(Generation.storable($0)) } ?? .null,
                failure.map { .text($0) } ?? .null,
                .integer(silent ? 1 : 0),
            ])
    }

    /// Bookkept heartbeats (both slots and `heartbeat.json`) and `confirmation.json` of every host: host → name →
    /// file.
    func replacedFiles() throws -> [String: [String: BookkeptFile]] {
        var result: [String: [String: BookkeptFile]] = [:]
        let names = UploadName.heartbeatNames + [UploadName.confirmationName]
        let rows = try database.query(
            "SELECT * FROM ingest_files WHERE name IN (\(names.map { _ in "?" }.joined(separator: ", ")))",
            names.map { .text($0) })
        for row in rows {
            guard let host = row["host"].text, let name = row["name"].text else { continue }
            result[host, default: [:]][name] = Self.bookkept(row)
        }
        return result
    }

    /// Every bookkept file of one host: name → file.
    func bookkeptFiles(host: String) throws -> [String: BookkeptFile] {
        var result: [String: BookkeptFile] = [:]
        for row in try database.query("SELECT * FROM ingest_files WHERE host = ?", [.text(host)]) {
            if let name = row["name"].text { result[name] = Self.bookkept(row) }
        }
        return result
    }

    private static func bookkept(_ row: SQLiteRow) -> BookkeptFile {
        BookkeptFile(
            identity: FileIdentity(
                recordedSize: row["size"].integer ?? -1,
                modifiedNanosecondsSinceEpoch: row["mtime_ns"].integer ?? -1,
                inode: UInt64(bitPattern: row["inode"].integer ?? -1)),
            ingested: (row["ingested"].integer ?? 0) != 0, warning: row["warning"].text)
    }

    func bookkeep(host: String, name: String, _ file: BookkeptFile) throws {
        try database.query(
            """
            INSERT OR REPLACE INTO ingest_files (host, name, size, mtime_ns, inode, ingested, warning)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(host), .text(name), .integer(file.identity.size),
                .integer(file.identity.modifiedNanosecondsSinceEpoch),
                .integer(Int64(bitPattern: file.identity.inode)), .integer(file.ingested ? 1 : 0),
                file.warning.map { .text($0) } ?? .null,
            ])
    }

    func forget(host: String, names: [String]) throws {
        for name in names {
            try database.query("DELETE FROM ingest_files WHERE host = ? AND name = ?", [.text(host), .text(name)])
        }
    }

    /// Warnings of refused files still in each host's `logs/`: host → [(name, warning)], by name.
    func refusals() throws -> [String: [(name: String, warning: String)]] {
        var result: [String: [(name: String, warning: String)]] = [:]
        for row in try database.query(
            "SELECT host, name, warning FROM ingest_files WHERE warning IS NOT NULL ORDER BY host, name")
        {
            guard let key = row["host"].text, let name = row["name"].text, let warning = row["warning"].text else {
                continue
            }
            // A mirror's refusals are the host's too, named with the mirror.
            let parts = key.split(separator: "@", maxSplits: 1)
            let host = String(parts[0])
            let shown = parts.count == 2 ? "\(name) (on mirror \(parts[1]))" : name
            result[host, default: []].append((shown, warning))
        }
        return result
    }

    // MARK: - Reports, logs, heartbeats

    func insertReport(host: String, name: String, received: Int64, _ report: RunReport, json: [UInt8]) throws {
        try database.query(
            """
            INSERT OR REPLACE INTO reports (host, name, received_ns, state, generation, previous_generation, started_at,
                finished_at, duration, reboot_needed, reason, log_name, json, client_version)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(host), .text(name), .integer(received), .text(report.state.rawValue),
                report.generation.map { .integer(Generation.storable($0)) } ?? .null,
                report.previousGeneration.map { .integer(Generation.storable($0)) } ?? .null, .text(report.startedAt),
                .text(report.finishedAt), .real(report.durations.total),
                report.rebootNeeded.map { .integer($0 ? 1 : 0) } ?? .null, report.reason.map { .text($0) } ?? .null,
                report.log.map { .text($0) } ?? .null, .text(String(decoding: json, as: UTF8.self)),
                report.clientVersion.map { .text($0) } ?? .null,
            ])
    }

    func insertLog(host: String, name: String, received: Int64, size: Int64, bytes: [UInt8]) throws {
        try database.query(
            "INSERT OR REPLACE INTO run_logs (host, name, received_ns, size, text) VALUES (?, ?, ?, ?, ?)",
            [.text(host), .text(name), .integer(received), .integer(size), .blob(bytes)])
    }

    func saveHeartbeat(host: String, received: Int64, _ beat: Heartbeat, json: [UInt8]) throws {
        try database.query(
            """
            INSERT OR REPLACE INTO heartbeats (host, received_ns, at, applied_generation, seen_generation,
                failed_generation, last_result, reason, reboot_needed, json, client_version)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(host), .integer(received), .text(beat.at),
                beat.appliedGeneration.map { .integer(Generation.storable($0)) } ?? .null,
                beat.seenGeneration.map { .integer(Generation.storable($0)) } ?? .null,
                beat.failedGeneration.map { .integer(Generation.storable($0)) } ?? .null,
                beat.lastResult.map { .text($0.rawValue) } ?? .null, beat.reason.map { .text($0) } ?? .null,
                beat.rebootNeeded.map { .integer($0 ? 1 : 0) } ?? .null, .text(String(decoding: json, as: UTF8.self)),
                beat.clientVersion.map { .text($0) } ?? .null,
            ])
    }

    /// Keeps the newest `keep` reports and logs of a host.
    func trimHistory(host: String, keep: Int) throws {
        try database.query(
            """
            DELETE FROM reports WHERE host = ? AND id NOT IN
                (SELECT id FROM reports WHERE host = ? ORDER BY id DESC LIMIT ?)
            """,
            [.text(host), .text(host), .integer(Int64(keep))])
        try database.query(
            """
            DELETE FROM run_logs WHERE host = ? AND name NOT IN
                (SELECT name FROM run_logs WHERE host = ? ORDER BY received_ns DESC, name DESC LIMIT ?)
            """, [.text(host), .text(host), .integer(Int64(keep))])
    }

    /// A stored report, as the status and `fleet logs` use it.
    struct ReportRow: Equatable, Sendable {
        var id: Int64
        var host: String
        var name: String
        var received: Int64
        var state: RunOutcome
        var generation: UInt64?
        var previousGeneration: UInt64?
        var startedAt: String
        var finishedAt: String
        var duration: Double
        var rebootNeeded: Bool?
        var reason: String?
        var logName: String?
        var json: String
        /// The fleet-client version it states (checked at ingest), nil when it states none.
        var clientVersion: String? = nil

        /// The generation the host said it runs when it wrote the report.
        var appliedGeneration: UInt64? { state == .applied ? generation : previousGeneration }
    }

    struct HeartbeatRow: Equatable, Sendable {
        var received: Int64
        var at: String
        var appliedGeneration: UInt64?
        var seenGeneration: UInt64?
        var failedGeneration: UInt64?
        var lastResult: RunOutcome?
        var reason: String?
        var rebootNeeded: Bool?
        var pollIntervalSeconds: Int?
        /// The fleet-client version it states (checked at ingest), nil when it states none.
        var clientVersion: String? = nil
        var failedConnectAttempts: Int? = nil
        /// The host-local overlays it states (``OverlayList``), nil when none.
        var overlays: [RunReport.Overlay]? = nil
        /// The server that served its run and those it passed over (``ServerList``), nil when it states none.
        var server: String? = nil
        var skippedServers: [RunReport.SkippedServer]? = nil
    }

    func heartbeats() throws -> [String: HeartbeatRow] {
        var result: [String: HeartbeatRow] = [:]
        for row in try database.query("SELECT * FROM heartbeats") {
            guard let host = row["host"].text else { continue }
            result[host] = Self.heartbeat(row)
        }
        return result
    }

    func heartbeat(host: String) throws -> HeartbeatRow? {
        try database.query("SELECT * FROM heartbeats WHERE host = ?", [.text(host)]).first.map(Self.heartbeat)
    }

    private static func heartbeat(_ row: SQLiteRow) -> HeartbeatRow {
        let servers = ServerList.read(json: row["json"].text)
        return HeartbeatRow(
            received: row["received_ns"].integer ?? 0, at: row["at"].text ?? "",
            appliedGeneration: Generation.stored(row["applied_generation"].integer),
            seenGeneration: Generation.stored(row["seen_generation"].integer),
            failedGeneration: Generation.stored(row["failed_generation"].integer),
            lastResult: row["last_result"].text.flatMap(RunOutcome.init(rawValue:)), reason: row["reason"].text,
            rebootNeeded: row["reboot_needed"].integer.map { $0 != 0 },
            pollIntervalSeconds: DeclaredPollInterval.read(json: row["json"].text),
            clientVersion: row["client_version"].text,
            failedConnectAttempts: ConnectAttempts.failed(json: row["json"].text),
            overlays: OverlayList.read(json: row["json"].text), server: servers.server,
            skippedServers: servers.skipped)
    }

    /// The newest report of every host, by the time the server received it (then by ingest order).
    func latestReports() throws -> [String: ReportRow] {
        var result: [String: ReportRow] = [:]
        let rows = try database.query(
            """
            SELECT r.* FROM reports r JOIN (SELECT host, max(received_ns) AS received FROM reports GROUP BY host) m
            ON r.host = m.host AND r.received_ns = m.received
            """)
        for row in rows {
            guard let report = Self.report(row) else { continue }
            if let other = result[report.host], other.id > report.id { continue }
            result[report.host] = report
        }
        return result
    }

    /// The host's newest word received before `received` (its newest report or its heartbeat, whichever
    /// arrived last), which a new upload's times and generation must agree with.
    func previousWord(host: String, before received: Int64) throws -> UploadValidator.PreviousWord? {
        var newest: (received: Int64, word: UploadValidator.PreviousWord)?
        if let beat = try heartbeat(host: host), beat.received < received, let at = UTCTime.parseISO(beat.at) {
            newest = (beat.received, .init(at: at, applied: beat.appliedGeneration, what: "heartbeat"))
        }
        let rows = try database.query(
            "SELECT * FROM reports WHERE host = ? AND received_ns < ? ORDER BY received_ns DESC, id DESC LIMIT 1",
            [.text(host), .integer(received)])
        if let report = rows.first.flatMap(Self.report), report.received >= (newest?.received ?? Int64.min),
            let at = UTCTime.parseISO(report.finishedAt)
        {
            newest = (report.received, .init(at: at, applied: report.appliedGeneration, what: "report \(report.name)"))
        }
        return newest?.word
    }

    /// The newest report of `host` about `generation` that says it failed, was rolled back or refused.
    func failure(host: String, generation: UInt64) throws -> ReportRow? {
        try database.query(
            """
            SELECT * FROM reports WHERE host = ? AND generation = ? AND state IN ('failed', 'rolled-back', 'refused')
            ORDER BY id DESC LIMIT 1
            """, [.text(host), .integer(Generation.storable(generation))]
        ).first.flatMap(Self.report)
    }

    /// The newest `count` reports of a host after `id`, oldest first.
    func reports(host: String, last count: Int, after id: Int64 = 0) throws -> [ReportRow] {
        try database.query(
            "SELECT * FROM (SELECT * FROM reports WHERE host = ? AND id > ? ORDER BY id DESC LIMIT ?) ORDER BY id",
            [.text(host), .integer(id), .integer(Int64(count))]
        ).compactMap(Self.report)
    }

    /// A stored log and the size of the file it was read from.
    func log(host: String, name: String) throws -> (text: [UInt8], size: Int64)? {
        guard
            let row = try database.query(
                "SELECT text, size FROM run_logs WHERE host = ? AND name = ?", [.text(host), .text(name)]
            ).first
        else { return nil }
        let bytes: [UInt8]
        switch row["text"] {
        case .blob(let blob): bytes = blob
        case .text(let text): bytes = Array(text.utf8)
        default: bytes = []
        }
        return (bytes, row["size"].integer ?? Int64(bytes.count))
    }

    private static func report(_ row: SQLiteRow) -> ReportRow? {
        guard let host = row["host"].text, let name = row["name"].text,
            let state = row["state"].text.flatMap(RunOutcome.init(rawValue:))
        else { return nil }
        var duration = 0.0
        if case .real(let value) = row["duration"] { duration = value }
        if case .integer(let value) = row["duration"] { duration = Double(value) }
        return ReportRow(
            id: row["id"].integer ?? 0, host: host, name: name, received: row["received_ns"].integer ?? 0, state: state,
            generation: Generation.stored(row["generation"].integer),
            previousGeneration: Generation.stored(row["previous_generation"].integer),
            startedAt: row["started_at"].text ?? "", finishedAt: row["finished_at"].text ?? "", duration: duration,
            rebootNeeded: row["reboot_needed"].integer.map { $0 != 0 }, reason: row["reason"].text,
            logName: row["log_name"].text, json: row["json"].text ?? "", clientVersion: row["client_version"].text)
    }
}
