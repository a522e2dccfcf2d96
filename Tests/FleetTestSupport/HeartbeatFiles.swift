import FleetFiles
public import FleetProtocol
import Foundation

/// The heartbeat a host's `logs/` shows, as the server takes it: the newest (by mtime) of the slots and an older
/// client's `heartbeat.json` that decodes.
public enum HeartbeatFiles {
    public struct NoHeartbeat: Error, CustomStringConvertible {
        public let logs: String
        public var description: String { "no heartbeat that decodes in \(logs)" }
    }

    /// The newest heartbeat that decodes, with the name of its file.
    public static func newest(in logs: String) throws -> (name: String, heartbeat: Heartbeat) {
        var newest: (name: String, heartbeat: Heartbeat, mtime: Int64)?
        for name in UploadName.heartbeatNames {
            guard let status = try FileStatus.of(logs + "/" + name),
                let bytes = try? FileIO.read(logs + "/" + name),
                let beat = try? JSONDecoder().decode(Heartbeat.self, from: Data(bytes))
            else { continue }
            let mtime = status.modificationSeconds * 1_000_000_000 + status.modificationNanoseconds
            if mtime > newest?.mtime ?? .min { newest = (name, beat, mtime) }
        }
        guard let newest else { throw NoHeartbeat(logs: logs) }
        return (newest.name, newest.heartbeat)
    }

    /// The newest heartbeat that decodes in `logs`.
    public static func heartbeat(in logs: String) throws -> Heartbeat { try newest(in: logs).heartbeat }
}
