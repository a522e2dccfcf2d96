public import FleetProtocol
import Foundation
package import SQLiteKit

/// The server's memory of what it published: the `hosts`, `publications` and `events` tables of
/// ``StateDatabase`` (state.db). The chroots stay the source of truth for what hosts can fetch.
public final class StateStore {
    private let database: SQLiteDatabase

    /// One schema change per entry, applied in order; never edit a shipped entry, append a new one.
    static let migrations = [
        """
        CREATE TABLE hosts (
            name TEXT PRIMARY KEY,
            last_generation INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE publications (
            host TEXT NOT NULL,
            generation INTEGER NOT NULL,
            published_at TEXT NOT NULL,
            source_commit TEXT NOT NULL,
            content_digest TEXT NOT NULL,
            snapshot_sha256 TEXT NOT NULL,
            snapshot_size INTEGER NOT NULL,
            files INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            PRIMARY KEY (host, generation)
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            host TEXT,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX events_by_host ON events (host, id);
        """,
        // 2: the review side's tables were created here; they are FleetReview's own migrations now
        // (`ReviewStore.migrations`, written so that databases made with this entry keep them as they are).
        "SELECT 1;",
        // 3: what each publication's manifest names, so nothing is read back from events.
        """
        ALTER TABLE publications ADD COLUMN toplevel TEXT;
        ALTER TABLE publications ADD COLUMN has_cache INTEGER NOT NULL DEFAULT 0;
        UPDATE publications SET
            toplevel = (SELECT json_extract(e.detail, '$.toplevel') FROM events e
                WHERE e.kind = 'system' AND e.host = publications.host
                AND json_extract(e.detail, '$.generation') = CAST(publications.generation AS TEXT)
                ORDER BY e.id DESC LIMIT 1),
            has_cache = coalesce((SELECT json_extract(e.detail, '$.cache') = 'true' FROM events e
                WHERE e.kind = 'system' AND e.host = publications.host
                AND json_extract(e.detail, '$.generation') = CAST(publications.generation AS TEXT)
                ORDER BY e.id DESC LIMIT 1), 0);
        DELETE FROM events WHERE kind = 'system';
        """,
        // 4: the build gate's memory: a host's newest configuration that did not build, so that the same tree
        // is not built (and announced) again by every publish.
        """
        CREATE TABLE build_failures (
            host TEXT PRIMARY KEY,
            tree_digest TEXT NOT NULL,
            failed_at TEXT NOT NULL,
            reason TEXT,
            log TEXT
        );
        """,
    ]

    /// Creates or migrates its tables in `database`.
    public init(_ database: StateDatabase) throws {
        self.database = database.connection
        try self.database.migrate(Self.migrations)
    }

    /// Opens (creating and migrating) `<stateDirectory>/state.db`, for a caller that uses no other store.
    public convenience init(stateDirectory: String) throws {
        try self.init(StateDatabase(stateDirectory: stateDirectory))
    }

    /// The connection, for the stores of other modules' tables opened over a `StateStore` (the rollout's).
    package var connection: SQLiteDatabase { database }

    public var schemaVersion: Int64 { get throws { try database.userVersion } }

    /// The highest generation ever published for `host`, 0 when none.
    ///
    /// - Throws: `ServerStoreError` naming the host when state.db holds a value that is not a generation (edited
    ///   by hand, or written before generations were bounded): nothing can safely follow it.
    public func lastGeneration(of host: HostName) throws -> UInt64 {
        let rows = try database.query("SELECT last_generation FROM hosts WHERE name = ?", [.text(host.value)])
        guard let stored = rows.first?["last_generation"].integer, stored != 0 else { return 0 }
        guard let generation = Generation.stored(stored) else {
            throw ServerStoreError(
                "\(database.path): host \(host)'s last generation \(stored) is not a generation (1 to 2^53); "
                    + "correct it (UPDATE hosts SET last_generation = … WHERE name = '\(host)') before publishing it")
        }
        return generation
    }

    /// The highest generation ever published for each host that has a valid one, by host name.
    public func lastGenerations() throws -> [String: UInt64] {
        var generations: [String: UInt64] = [:]
        for row in try database.query("SELECT name, last_generation FROM hosts") {
            if let name = row["name"].text, let generation = Generation.stored(row["last_generation"].integer) {
                generations[name] = generation
            }
        }
        return generations
    }

    public struct Publication: Sendable, Equatable {
        public var host: HostName
        public var generation: UInt64
        public var publishedAt: String
        public var sourceCommit: String
        public var contentDigest: String
        public var snapshotSHA256: String
        public var snapshotSize: Int64
        public var files: Int
        public var bytes: Int64
        /// The built system the manifest names, when the server built it.
        public var toplevel: String?
        /// Whether the host's `cache/` holds the toplevel's closure.
        public var hasCache: Bool

        public init(
            host: HostName, generation: UInt64, publishedAt: String, sourceCommit: String, contentDigest: String,
            snapshotSHA256: String, snapshotSize: Int64, files: Int, bytes: Int64, toplevel: String? = nil,
            hasCache: Bool = false
        ) {
            self.toplevel = toplevel
            self.hasCache = hasCache
            self.host = host
            self.generation = generation
            self.publishedAt = publishedAt
            self.sourceCommit = sourceCommit
            self.contentDigest = contentDigest
            self.snapshotSHA256 = snapshotSHA256
            self.snapshotSize = snapshotSize
            self.files = files
            self.bytes = bytes
        }
    }

    /// Records a publication and its event in one transaction; the host's generation never goes down.
    public func record(_ publication: Publication) throws {
        if let problem = Generation.problem(
            with: publication.generation, "publication of \(publication.host): generation")
        {
            throw ServerStoreError(problem)
        }
        try database.transaction {
            try database.query(
                """
                INSERT INTO hosts (name, last_generation) VALUES (?, ?)
                ON CONFLICT(name) DO UPDATE SET last_generation = max(last_generation, excluded.last_generation)
                """, [.text(publication.host.value), .integer(Generation.storable(publication.generation))])
            try database.query(
                """
                INSERT OR REPLACE INTO publications
                (host, generation, published_at, source_commit, content_digest, snapshot_sha256, snapshot_size, files, bytes,
                 toplevel, has_cache)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(publication.host.value), .integer(Generation.storable(publication.generation)),
                    .text(publication.publishedAt),
                    .text(publication.sourceCommit), .text(publication.contentDigest),
                    .text(publication.snapshotSHA256),
                    .integer(publication.snapshotSize), .integer(Int64(publication.files)), .integer(publication.bytes),
                    publication.toplevel.map { .text($0) } ?? .null, .integer(publication.hasCache ? 1 : 0),
                ])
            try insertEvent(
                host: publication.host, kind: .published,
                detail: ["generation": "\(publication.generation)", "source_commit": publication.sourceCommit])
        }
    }

    /// The host's recorded publications; rows whose generation is not one are left out.
    public func publications(of host: HostName) throws -> [Publication] {
        try database.query("SELECT * FROM publications WHERE host = ? ORDER BY generation", [.text(host.value)])
            .compactMap { row in
                guard let generation = Generation.stored(row["generation"].integer) else { return nil }
                return Publication(
                    host: host, generation: generation,
                    publishedAt: row["published_at"].text ?? "", sourceCommit: row["source_commit"].text ?? "",
                    contentDigest: row["content_digest"].text ?? "", snapshotSHA256: row["snapshot_sha256"].text ?? "",
                    snapshotSize: row["snapshot_size"].integer ?? 0, files: Int(row["files"].integer ?? 0),
                    bytes: row["bytes"].integer ?? 0, toplevel: row["toplevel"].text,
                    hasCache: (row["has_cache"].integer ?? 0) != 0)
            }
    }

    /// A host's newest configuration that did not build on the server: its tree (``BuildGate``'s digest, secrets
    /// excluded), when, why, and the log. Kept until the host builds, or its configuration is the published one.
    public struct BuildFailure: Codable, Sendable, Equatable {
        public var treeDigest: String
        public var failedAt: String
        public var reason: String?
        public var log: String?

        public init(treeDigest: String, failedAt: String, reason: String?, log: String?) {
            self.treeDigest = treeDigest
            self.failedAt = failedAt
            self.reason = reason
            self.log = log
        }
    }

    /// Records a build's event and what the gate remembers of it, in one transaction: a failure replaces the
    /// host's remembered one; a success (`failure` nil) forgets it.
    public func recordBuild(host: HostName, kind: EventKind, detail: [String: String], failure: BuildFailure?) throws {
        try database.transaction {
            try insertEvent(host: host, kind: kind, detail: detail)
            if let failure {
                try database.query(
                    "INSERT OR REPLACE INTO build_failures (host, tree_digest, failed_at, reason, log) VALUES (?, ?, ?, ?, ?)",
                    [
                        .text(host.value), .text(failure.treeDigest), .text(failure.failedAt),
                        failure.reason.map { .text($0) } ?? .null, failure.log.map { .text($0) } ?? .null,
                    ])
            } else {
                try forgetBuildFailure(of: host)
            }
        }
    }

    /// Forgets `host`'s build failure: it built, or its configuration is the published one again.
    public func forgetBuildFailure(of host: HostName) throws {
        try database.query("DELETE FROM build_failures WHERE host = ?", [.text(host.value)])
    }

    /// Every remembered build failure, by host name.
    public func buildFailures() throws -> [String: BuildFailure] {
        var result: [String: BuildFailure] = [:]
        for row in try database.query("SELECT * FROM build_failures") {
            guard let host = row["host"].text, let tree = row["tree_digest"].text else { continue }
            result[host] = BuildFailure(
                treeDigest: tree, failedAt: row["failed_at"].text ?? "", reason: row["reason"].text,
                log: row["log"].text)
        }
        return result
    }

    public struct Event: Sendable, Equatable {
        public var id: Int64
        public var at: String
        public var host: String?
        public var kind: String
        /// JSON object text.
        public var detail: String
    }

    /// Appends an event (e.g. `refused` with its reason).
    public func recordEvent(host: HostName?, kind: EventKind, detail: [String: String]) throws {
        try insertEvent(host: host, kind: kind, detail: detail)
    }

    public func events(host: HostName? = nil, after id: Int64 = 0) throws -> [Event] {
        let rows: [SQLiteRow]
        if let host {
            rows = try database.query(
                "SELECT * FROM events WHERE host = ? AND id > ? ORDER BY id", [.text(host.value), .integer(id)])
        } else {
            rows = try database.query("SELECT * FROM events WHERE id > ? ORDER BY id", [.integer(id)])
        }
        return rows.map {
            Event(
                id: $0["id"].integer ?? 0, at: $0["at"].text ?? "", host: $0["host"].text, kind: $0["kind"].text ?? "",
                detail: $0["detail"].text ?? "{}")
        }
    }

    /// How many events of `kind` each host has.
    public func eventCounts(_ kind: EventKind) throws -> [String: Int] {
        var result: [String: Int] = [:]
        for row in try database.query(
            "SELECT host, count(*) AS n FROM events WHERE kind = ? AND host IS NOT NULL GROUP BY host",
            [.text(kind.rawValue)])
        {
            if let host = row["host"].text { result[host] = Int(row["n"].integer ?? 0) }
        }
        return result
    }

    private func insertEvent(host: HostName?, kind: EventKind, detail: [String: String]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = String(decoding: try encoder.encode(detail), as: UTF8.self)
        try database.query(
            "INSERT INTO events (at, host, kind, detail) VALUES (?, ?, ?, ?)",
            [
                .text(UTCTime.iso(WallClock.system.now())), host.map { .text($0.value) } ?? .null, .text(kind.rawValue),
                .text(json),
            ])
    }
}
