import FleetFiles
import FleetProtocol
import FleetTestSupport
import SQLiteKit
import Testing

@testable import FleetReview
@testable import ServerStore

/// state.db: each module migrates its own tables, and a database made by an earlier fleet is carried forward
/// with nothing lost.
@Suite("state.db schema")
struct StateStoreTests {
    /// A database as fleet made it before the review owned its tables and publications named their toplevel:
    /// user_version 2, the review tables from StateStore's second migration, and a "system" event per built
    /// publication.
    @Test func aDatabaseFromAnEarlierFleetIsMigratedWithNothingLost() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let old = try SQLiteDatabase(path: directory.path(StateDatabase.fileName))
        try old.migrate([StateStore.migrations[0], ReviewStore.migrations[0]])
        try old.execute(
            """
            INSERT INTO hosts VALUES ('a', 2);
            INSERT INTO publications VALUES ('a', 1, '2026-11-01T00:00:00Z', 'abc', 'd1', 's1', 10, 1, 5);
            INSERT INTO publications VALUES ('a', 2, '2026-11-02T00:00:00Z', 'abd', 'd2', 's2', 11, 1, 6);
            INSERT INTO events (at, host, kind, detail) VALUES ('2026-11-02T00:00:00Z', 'a', 'system',
                '{"cache":"true","generation":"2","toplevel":"/nix/store/abc-system"}');
            INSERT INTO reports (host, name, received_ns, state, started_at, finished_at, duration, json)
                VALUES ('a', 'report-1.json', 1, 'applied', 's', 'f', 1.0, '{}');
            """)
        #expect(try old.userVersion == 2)

        let database = try StateDatabase(stateDirectory: directory.path)
        let store = try StateStore(database)
        let review = try ReviewStore(database)
        let publications = try store.publications(of: try HostName("a"))
        #expect(publications.map(\.toplevel) == [nil, "/nix/store/abc-system"])
        #expect(publications.map(\.hasCache) == [false, true])
        #expect(try store.events().allSatisfy { $0.kind != "system" })
        #expect(try review.latestReports()["a"]?.name == "report-1.json")
        #expect(try store.schemaVersion == Int64(StateStore.migrations.count))
        let versions = try database.connection.query("SELECT version FROM schema_versions WHERE component = 'review'")
        #expect(versions.first?["version"].integer == Int64(ReviewStore.migrations.count))
    }

    /// A new database gets the same tables, each from the module that owns them.
    @Test func aNewDatabaseGetsEveryModulesTables() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let database = try StateDatabase(stateDirectory: directory.path)
        _ = try StateStore(database)
        _ = try ReviewStore(database)
        let tables = try database.connection.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .compactMap { $0["name"].text }
        for table in ["events", "heartbeats", "hosts", "ingest_files", "publications", "reports", "review_hosts"] {
            #expect(tables.contains(table), "\(tables)")
        }
    }
}
