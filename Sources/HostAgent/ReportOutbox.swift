import ClientStateStore
import FleetFiles
import FleetProtocol
import Foundation

/// `<state_dir>/outbox/`: the reports and logs that could not be uploaded yet, kept for the next contact, when
/// ``RunReporter`` uploads them first.
struct ReportOutbox {
    /// Files kept waiting at most; the oldest go first (each report says what happened, not what is).
    static let capacity = 64

    let directory: String
    let log: RunLog

    init(stateDirectory: String, log: RunLog) {
        self.directory = stateDirectory + "/outbox"
        self.log = log
    }

    /// Keeps `files` (name → bytes) locally until a later run uploads them. Names sort by time.
    func enqueue(_ files: [(name: String, bytes: [UInt8])]) throws(ClientError) {
        do {
            try FileIO.ensureDirectory(directory, mode: 0o700)
            for file in files {
                try FileIO.writeAtomically(file.bytes, to: directory + "/" + file.name, mode: 0o600)
            }
        } catch {
            throw ClientError("cannot keep the report in \(directory): \(error)")
        }
        trim()
    }

    /// A waiting file's bytes, or nil when it cannot be read (it is then left where it is).
    func contents(of name: String) -> [UInt8]? {
        try? FileIO.readNoFollow(directory + "/" + name, limit: 1 << 30)
    }

    /// Drops a waiting file, once it is in place on the server.
    func remove(_ name: String) {
        _ = try? FileIO.removeFile(directory + "/" + name)
    }

    /// Waiting file names, oldest first (log before its report, which names it).
    func waiting() -> [String] {
        let names = (try? FileIO.listDirectory(directory)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted { lhs, rhs in
            let (l, r) = (Self.sortKey(lhs), Self.sortKey(rhs))
            return l == r ? lhs < rhs : l < r
        }
    }

    /// `log-<stem>.txt` and `report-<stem>.json` sort by their stem (`<time>[-g<generation>]`), the log first.
    /// The stem alone, without the extension: with it, `.json` sorted before `.txt` and every report went up
    /// before the log it names.
    private static func sortKey(_ name: String) -> String {
        let rank: String
        switch UploadName(name) {
        case .log: rank = "0"
        case .report: rank = "1"
        default: return name
        }
        let afterKind = name.drop(while: { $0 != "-" }).dropFirst()
        return afterKind[..<(afterKind.lastIndex(of: ".") ?? afterKind.endIndex)] + rank
    }

    private func trim() {
        let names = waiting()
        guard names.count > Self.capacity else { return }
        let dropped = names.prefix(names.count - Self.capacity)
        for name in dropped { remove(name) }
        log.phase(
            "outbox full: dropped the \(dropped.count) oldest unsent report files (\(dropped.joined(separator: ", ")))")
    }
}
