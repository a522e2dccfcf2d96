internal import CSQLite

/// A value bound to or read from a statement.
public enum SQLiteValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    public var integer: Int64? { if case .integer(let value) = self { value } else { nil } }
    public var text: String? { if case .text(let value) = self { value } else { nil } }
}

/// A row of a result, by column name.
public struct SQLiteRow: Sendable {
    public let columns: [String]
    public let values: [SQLiteValue]

    public subscript(_ name: String) -> SQLiteValue {
        guard let index = columns.firstIndex(of: name) else { return .null }
        return values[index]
    }
}

public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let code: Int32
    public let message: String
    public let statement: String?

    public var description: String {
        var text = "SQLite database \(path): \(message) (code \(code))"
        if let statement { text += " in: \(statement)" }
        return text
    }
}

/// A connection to one SQLite file. Not thread-safe: one owner at a time (the server's commands are
/// short-lived and single-threaded where they touch the database).
public final class SQLiteDatabase {
    private let handle: OpaquePointer
    public let path: String

    /// Opens (creating if needed) the database at `path`, with WAL and a busy timeout so that a second
    /// `fleet` process waits instead of failing.
    public init(path: String) throws(SQLiteError) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW
        let status = sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let handle { sqlite3_close(handle) }
            throw SQLiteError(path: path, code: status, message: message, statement: nil)
        }
        self.handle = handle
        self.path = path
        sqlite3_busy_timeout(handle, 10_000)
        try execute("PRAGMA journal_mode = WAL")
        try execute("PRAGMA foreign_keys = ON")
        try execute("PRAGMA synchronous = NORMAL")
    }

    deinit { sqlite3_close_v2(handle) }

    /// Runs one or more statements that take no parameters.
    public func execute(_ sql: String) throws(SQLiteError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if status != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? lastMessage
            sqlite3_free(errorMessage)
            throw SQLiteError(path: path, code: status, message: message, statement: sql)
        }
    }

    /// Runs a statement with parameters (`?`), returning every row.
    @discardableResult
    public func query(_ sql: String, _ parameters: [SQLiteValue] = []) throws(SQLiteError) -> [SQLiteRow] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw failure(sql)
        }
        defer { sqlite3_finalize(statement) }
        for (offset, value) in parameters.enumerated() {
            let index = Int32(offset + 1)
            let status: Int32
            switch value {
            case .null: status = sqlite3_bind_null(statement, index)
            case .integer(let number): status = sqlite3_bind_int64(statement, index, number)
            case .real(let number): status = sqlite3_bind_double(statement, index, number)
            case .text(let text): status = sqlite3_bind_text(statement, index, text, -1, transient)
            case .blob(let bytes):
                status = bytes.withUnsafeBytes {
                    sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), transient)
                }
            }
            guard status == SQLITE_OK else { throw failure(sql) }
        }
        let columnCount = sqlite3_column_count(statement)
        let columns = (0..<columnCount).map { String(cString: sqlite3_column_name(statement, $0)) }
        var rows: [SQLiteRow] = []
        while true {
            let status = sqlite3_step(statement)
            if status == SQLITE_DONE { break }
            guard status == SQLITE_ROW else { throw failure(sql) }
            var values: [SQLiteValue] = []
            values.reserveCapacity(Int(columnCount))
            for column in 0..<columnCount {
                switch sqlite3_column_type(statement, column) {
                case SQLITE_INTEGER: values.append(.integer(sqlite3_column_int64(statement, column)))
                case SQLITE_FLOAT: values.append(.real(sqlite3_column_double(statement, column)))
                case SQLITE_TEXT: values.append(.text(String(cString: sqlite3_column_text(statement, column))))
                case SQLITE_BLOB:
                    let count = Int(sqlite3_column_bytes(statement, column))
                    if let base = sqlite3_column_blob(statement, column) {
                        values.append(.blob(Array(UnsafeRawBufferPointer(start: base, count: count))))
                    } else {
                        values.append(.blob([]))
                    }
                default: values.append(.null)
                }
            }
            rows.append(SQLiteRow(columns: columns, values: values))
        }
        return rows
    }

    /// Runs `body` in one transaction (`BEGIN IMMEDIATE`), committing on return and rolling back on throw.
    public func transaction<Result>(_ body: () throws -> Result) throws -> Result {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// The schema version kept in `PRAGMA user_version`.
    public var userVersion: Int64 {
        get throws(SQLiteError) { try query("PRAGMA user_version").first?["user_version"].integer ?? 0 }
    }

    /// Applies `migrations[n]` for every n at or above the stored version, each in its own transaction,
    /// and records the new version. A database newer than this program is refused, not downgraded.
    public func migrate(_ migrations: [String]) throws {
        try apply(migrations, from: try userVersion, named: "schema version") { version in
            try execute("PRAGMA user_version = \(version)")
        }
    }

    /// Applies the schema changes of one `component` (a module that owns some tables of a database shared with
    /// others) that were not applied yet, in order, each in its own transaction; the versions are kept in the
    /// `schema_versions` table, so every module migrates its own tables and none needs to know the others'.
    public func migrate(component: String, _ migrations: [String]) throws {
        try execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        let current =
            try query("SELECT version FROM schema_versions WHERE component = ?", [.text(component)]).first?[
                "version"
            ].integer ?? 0
        try apply(migrations, from: current, named: "schema version of \(component)") { version in
            _ = try query(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                    + "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                [.text(component), .integer(Int64(version))])
        }
    }

    /// Runs the migrations from `current` on, each with `record` of its new version in one transaction.
    private func apply(
        _ migrations: [String], from current: Int64, named what: String, record: (Int) throws -> Void
    ) throws {
        guard current <= Int64(migrations.count) else {
            throw SQLiteError(
                path: path, code: SQLITE_ERROR,
                message: "\(what) \(current) is newer than this fleet understands (\(migrations.count)); "
                    + "upgrade fleet instead of opening it with an older one", statement: nil)
        }
        for (index, sql) in migrations.enumerated() where Int64(index) >= current {
            try transaction {
                try execute(sql)
                try record(index + 1)
            }
        }
    }

    public var lastInsertedRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    private var lastMessage: String { String(cString: sqlite3_errmsg(handle)) }

    private func failure(_ sql: String) -> SQLiteError {
        SQLiteError(path: path, code: sqlite3_errcode(handle), message: lastMessage, statement: sql)
    }
}

/// `SQLITE_TRANSIENT` is a cast macro that does not import: SQLite copies bound values at once.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
