package import SQLiteKit

/// `state.db` in the server's state directory, opened once per process.
///
/// Several modules keep tables here: the publication record (``StateStore``) and the review's reports,
/// heartbeats and bookkeeping (FleetReview's `ReviewStore`). Each is a view over this one connection and
/// migrates its own tables (``SQLiteKit/SQLiteDatabase/migrate(component:_:)``), so that a status change and
/// its event can be written in one ``transaction(_:)``: two connections would either lose that or wait on
/// each other for SQLite's write lock.
public final class StateDatabase {
    public static let fileName = "state.db"

    /// The connection, for the stores built over it.
    package let connection: SQLiteDatabase

    /// Opens (creating it if need be) `<stateDirectory>/state.db`; the stores built over it create their tables.
    public init(stateDirectory: String) throws {
        connection = try SQLiteDatabase(path: stateDirectory + "/" + Self.fileName)
    }

    /// The file's path, for messages.
    public var path: String { connection.path }

    /// Runs `body` in one transaction: all of its writes, whichever store made them, or none.
    public func transaction<Result>(_ body: () throws -> Result) throws -> Result {
        try connection.transaction(body)
    }
}
