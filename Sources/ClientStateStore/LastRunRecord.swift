import FleetFiles
import FleetProtocol
import Foundation

/// How the last run went, in `<state_dir>/last-run.json` when that run changed nothing else.
struct LastRunRecord: Codable, Equatable {
    var lastResult: RunOutcome?
    var lastReason: String?
    var lastRunAt: String?
    var lastContactAt: String?
    var failedConnectAttempts: Int?
    var lastServer: String?
    /// Changes on every poll that writes a heartbeat: kept here, so that it costs no fsync. Lost with this file,
    /// the next poll may write the slot holding the last good heartbeat; the other then holds an older one.
    var heartbeatSlots: [String: HeartbeatSlot]?

    static let fileName = "last-run.json"

    /// The record, or nil when there is none or it cannot be used (a crash can leave it empty): it only
    /// says when the client last ran, which the next run says again.
    static func load(stateDirectory: String) -> LastRunRecord? {
        guard let bytes = try? FileIO.readNoFollow(stateDirectory + "/" + fileName, limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(LastRunRecord.self, from: Data(bytes))
    }

    /// Whether this record describes a run at least as recent as `other` (timestamps are fixed-width UTC).
    func isNewer(than other: LastRunRecord) -> Bool {
        guard let lastRunAt else { return false }
        return lastRunAt >= (other.lastRunAt ?? "")
    }

    func save(stateDirectory: String) throws(ClientError) {
        let path = stateDirectory + "/" + Self.fileName
        do {
            try FileIO.writeAtomically(ClientState.encoded(self), to: path, mode: 0o644, durable: false)
        } catch {
            throw ClientError("cannot write \(path): \(error)")
        }
    }
}
