import FleetProtocol
public import Foundation
import SQLiteKit
public import ServerStore

/// The rollout's memory in state.db (component `rollout`, its own migrations): where the newest rollout stands
/// (`rollout`, one row) and each host it carries (`rollout_hosts`): the generation it brings, the generation the
/// host had before (what `abort` returns it to), the signed manifest (written into the chroot when the host's
/// ring is reached, so nothing outside state.db, which no host can read, holds it before), and whether it was.
///
/// Every step is one transaction, and every step that writes a chroot is repeated by the next call when it was
/// cut short (``RolloutController``): so a `fleet` killed anywhere leaves a rollout that goes on where it stopped.
public final class RolloutStore {
    let database: SQLiteDatabase

    /// One schema change per entry, applied in order; never edit a shipped entry, append a new one.
    static let migrations = [
        """
        CREATE TABLE rollout (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            run TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ring INTEGER NOT NULL,
            status TEXT NOT NULL,
            confirmed_at INTEGER,
            halted_host TEXT,
            reason TEXT,
            changed_at TEXT NOT NULL
        );
        CREATE TABLE rollout_hosts (
            host TEXT PRIMARY KEY,
            generation INTEGER NOT NULL,
            previous_generation INTEGER,
            manifest BLOB NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0,
            waived INTEGER NOT NULL DEFAULT 0,
            run TEXT NOT NULL DEFAULT ''
        );
        """
    ]

    public enum Status: String, Codable, Sendable {
        /// Promoting ring by ring as the hosts report.
        case running
        /// A failure, rollback or silence beyond `max_failures`: nothing more is published until resumed.
        case halted
        /// Every ring has it.
        case complete
        /// `fleet rollout abort` started and did not finish; running it again finishes it.
        case aborting
        /// The hosts that had it were given their previous configuration again.
        case aborted
    }

    /// The `rollout` row.
    public struct State: Sendable, Equatable, Codable {
        /// Which publish started it.
        public var run: String
        public var startedAt: String
        /// The index of the newest ring that has the generation.
        public var ring: Int
        public var status: Status
        /// When every host of the current ring was first seen confirmed (seconds since the epoch): the soak's start.
        public var confirmedAt: Int64?
        public var haltedHost: String?
        public var reason: String?
        public var changedAt: String
    }

    /// A `rollout_hosts` row.
    public struct Host: Sendable, Equatable {
        public var host: String
        public var generation: UInt64
        public var previousGeneration: UInt64?
        public var manifest: [UInt8]
        /// Its manifest is in the chroot.
        public var delivered: Bool
        /// `resume` accepted its failure: it neither halts the rollout nor holds it back.
        public var waived: Bool
    }

    public convenience init(_ database: StateDatabase) throws { try self.init(connection: database.connection) }

    /// Over the same connection as `store`, so that the two never wait on each other.
    public convenience init(_ store: StateStore) throws { try self.init(connection: store.connection) }

    init(connection: SQLiteDatabase) throws {
        database = connection
        try database.migrate(component: "rollout", Self.migrations)
    }

    public func state() throws -> State? {
        guard let row = try database.query("SELECT * FROM rollout WHERE id = 1").first else { return nil }
        return State(
            run: row["run"].text ?? "", startedAt: row["started_at"].text ?? "",
            ring: Int(row["ring"].integer ?? 0), status: Status(rawValue: row["status"].text ?? "") ?? .halted,
            confirmedAt: row["confirmed_at"].integer, haltedHost: row["halted_host"].text, reason: row["reason"].text,
            changedAt: row["changed_at"].text ?? "")
    }

    public func hosts() throws -> [Host] {
        try database.query("SELECT * FROM rollout_hosts ORDER BY host").compactMap(Self.host(from:))
    }

    public func host(_ name: String) throws -> Host? {
        try database.query("SELECT * FROM rollout_hosts WHERE host = ?", [.text(name)]).first.flatMap(Self.host(from:))
    }

    static func host(from row: SQLiteRow) -> Host? {
        guard let host = row["host"].text, let generation = Generation.stored(row["generation"].integer) else {
            return nil
        }
        let manifest: [UInt8]
        switch row["manifest"] {
        case .blob(let bytes): manifest = bytes
        case .text(let text): manifest = Array(text.utf8)
        default: manifest = []
        }
        return Host(
            host: host, generation: generation,
            previousGeneration: Generation.stored(row["previous_generation"].integer), manifest: manifest,
            delivered: row["delivered"].integer == 1, waived: row["waived"].integer == 1)
    }

    /// Stages `host`'s new generation in the rollout started by publish `run`: the first host a publish stages
    /// starts a new rollout from the first ring (the hosts still waiting for the old one stay, with what they
    /// wait for; those that have it stay unless it was complete).
    public func stage(
        run: String, host: String, generation: UInt64, previousGeneration: UInt64?, manifest: [UInt8], now: Date
    ) throws {
        try database.transaction {
            let previous = try state()
            if previous?.run != run {
                // A complete rollout's hosts leave it. An unfinished one's that have its generation stay in the new
                // one, still to confirm what they got (a canary of a killed publish, say), and abort returns them.
                if previous?.status == .complete {
                    try database.query("DELETE FROM rollout_hosts WHERE delivered = 1 AND run != ?", [.text(run)])
                }
                try database.query("UPDATE rollout_hosts SET waived = 0")
                try database.query(
                    """
                    INSERT OR REPLACE INTO rollout (id, run, started_at, ring, status, confirmed_at, halted_host, reason,
                        changed_at)
                    VALUES (1, ?, ?, 0, 'running', NULL, NULL, NULL, ?)
                    """, [.text(run), .text(UTCTime.iso(now)), .text(UTCTime.iso(now))])
            }
            // A host still waiting for an older generation waits for this one instead, and goes back, on abort, to
            // what it has now.
            let returnsTo =
                try self.host(host).map { $0.delivered ? $0.generation : $0.previousGeneration } ?? previousGeneration
            try database.query(
                """
                INSERT OR REPLACE INTO rollout_hosts (host, generation, previous_generation, manifest, delivered, waived,
                    run)
                VALUES (?, ?, ?, ?, 0, 0, ?)
                """,
                [
                    .text(host), .integer(Generation.storable(generation)),
                    returnsTo.map { .integer(Generation.storable($0)) } ?? .null, .blob(manifest), .text(run),
                ])
        }
    }

    /// The host's manifest is in its chroot; `run` names the publish that wrote it there, when one did.
    public func markDelivered(_ host: String, generation: UInt64, run: String? = nil) throws {
        try database.query(
            "UPDATE rollout_hosts SET delivered = 1, run = coalesce(?, run) WHERE host = ? AND generation = ?",
            [run.map { .text($0) } ?? .null, .text(host), .integer(Generation.storable(generation))])
    }

    /// Forgets the host's row: its tree is what its chroot publishes again, or something newer was published.
    public func remove(_ host: String) throws {
        try database.query("DELETE FROM rollout_hosts WHERE host = ?", [.text(host)])
    }

    /// Forgets the whole rollout (rings were removed from fleet.toml, or an abort finished).
    public func clearHosts() throws { try database.query("DELETE FROM rollout_hosts") }

    /// Changes the rollout row; `waive` hosts' failures are accepted in the same transaction.
    public func update(
        ring: Int? = nil, status: Status? = nil, confirmedAt: Int64?? = nil, haltedHost: String?? = nil,
        reason: String?? = nil, waive: [String] = [], now: Date
    ) throws {
        try database.transaction {
            guard var current = try state() else { return }
            if let ring { current.ring = ring }
            if let status { current.status = status }
            if let confirmedAt { current.confirmedAt = confirmedAt }
            if let haltedHost { current.haltedHost = haltedHost }
            if let reason { current.reason = reason }
            try database.query(
                """
                UPDATE rollout SET ring = ?, status = ?, confirmed_at = ?, halted_host = ?, reason = ?, changed_at = ?
                WHERE id = 1
                """,
                [
                    .integer(Int64(current.ring)), .text(current.status.rawValue),
                    current.confirmedAt.map { .integer($0) } ?? .null, current.haltedHost.map { .text($0) } ?? .null,
                    current.reason.map { .text($0) } ?? .null, .text(UTCTime.iso(now)),
                ])
            for host in waive {
                try database.query("UPDATE rollout_hosts SET waived = 1 WHERE host = ?", [.text(host)])
            }
        }
    }
}
