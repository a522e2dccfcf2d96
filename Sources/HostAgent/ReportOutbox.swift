import FleetFiles
import FleetProtocol
import Foundation
import SFTPTransport

/// Uploads reports and logs into the chroot's `logs/`, each under a temporary name then renamed, so the server
/// never reads half a file. What cannot be uploaded now waits in `<state_dir>/outbox/` for the next contact.
struct ReportOutbox {
    /// Files kept waiting at most; the oldest go first (each report says what happened, not what is).
    static let capacity = 64

    let directory: String
    let log: RunLog

    init(stateDirectory: String, log: RunLog) {
        self.directory = stateDirectory + "/outbox"
        self.log = log
    }

    /// Keeps `files` (name → bytes) locally until ``flush(over:)`` uploads them. Names sort by time.
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

    /// Uploads every waiting file, oldest first, removing each once it is in place on the server.
    ///
    /// - Returns: how many were uploaded.
    @discardableResult
    func flush(over connection: SFTPConnection) async throws(SSHError) -> Int {
        let names = waiting()
        var uploaded = 0
        for name in names {
            guard let bytes = try? FileIO.readNoFollow(directory + "/" + name, limit: 1 << 30) else { continue }
            try await Self.upload(name: name, bytes: bytes, over: connection)
            unlink(directory + "/" + name)
            uploaded += 1
        }
        return uploaded
    }

    /// Writes one file into `logs/` under a temporary name and renames it into place.
    static func upload(name: String, bytes: [UInt8], over connection: SFTPConnection) async throws(SSHError) {
        try await connection.replaceFile(
            ChrootPaths.upload(name), bytes: bytes, through: ChrootPaths.uploadInProgress(name))
    }

    /// Waiting file names, oldest first (log before its report, which names it).
    func waiting() -> [String] {
        let names = (try? FileIO.listDirectory(directory)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted { lhs, rhs in
            let (l, r) = (Self.sortKey(lhs), Self.sortKey(rhs))
            return l == r ? lhs < rhs : l < r
        }
    }

    /// `log-<time>…` and `report-<time>…` sort by time, the log first.
    private static func sortKey(_ name: String) -> String {
        if name.hasPrefix("log-") { return String(name.dropFirst(4)) + "0" }
        if name.hasPrefix("report-") { return String(name.dropFirst(7)) + "1" }
        return name
    }

    private func trim() {
        let names = waiting()
        guard names.count > Self.capacity else { return }
        let dropped = names.prefix(names.count - Self.capacity)
        for name in dropped { unlink(directory + "/" + name) }
        log.phase(
            "outbox full: dropped the \(dropped.count) oldest unsent report files (\(dropped.joined(separator: ", ")))")
    }
}
