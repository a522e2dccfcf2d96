import FleetFiles
public import FleetProtocol
import Foundation

/// What the client remembers between runs, in `<state_dir>/state.json`.
///
/// Written atomically (temporary file, fsync, rename) at the end of every run, so a crash leaves the previous
/// state. The "last seen" fields are what make downgrades and replays detectable.
public struct ClientState: Codable, Sendable, Equatable {
    /// A generation the client has verified: enough to recognise the same one, or a forged twin, later.
    public struct Seen: Codable, Sendable, Equatable {
        public var generation: UInt64
        public var contentDigest: String
        public var snapshotSHA256: String
    }

    /// A generation applied to this machine.
    public struct Applied: Codable, Sendable, Equatable {
        public var generation: UInt64
        public var contentDigest: String
        public var sourceCommit: String
        /// The system store path the profile points to.
        public var system: String
        public var operation: String
        public var at: String
    }

    /// A generation that failed (or was rolled back); it is not tried again until a newer one is published.
    public struct Failed: Codable, Sendable, Equatable {
        public var generation: UInt64
        public var contentDigest: String
        public var state: RunOutcome
        public var reason: String
        public var at: String
    }

    /// The newest manifest that verified.
    public var lastSeen: Seen?
    public var applied: Applied?
    public var failed: Failed?
    /// The outcome of the last run, whatever it was.
    public var lastResult: RunOutcome?
    public var lastReason: String?
    /// When the last run finished.
    public var lastRunAt: String?
    /// When the server was last reached.
    public var lastContactAt: String?
    /// Why the machine needs a reboot to run its profile's system, when it does.
    public var rebootNeeded: String?
    /// The system the client last rebooted the machine for (never twice for the same one).
    public var rebootRequestedFor: String?

    public init() {}

    public static let fileName = "state.json"

    /// Reads the state; a missing file is the empty state of a new host, an unreadable one an error.
    public static func load(stateDirectory: String) throws(ClientError) -> ClientState {
        let path = stateDirectory + "/" + fileName
        let bytes: [UInt8]
        do {
            guard try FileStatus.of(path) != nil else { return ClientState() }
            bytes = try FileIO.readNoFollow(path, limit: 1 << 20)
        } catch {
            throw ClientError("cannot read \(path): \(error)")
        }
        do {
            return try JSONDecoder().decode(ClientState.self, from: Data(bytes))
        } catch {
            throw ClientError(
                "\(path) is not a fleet-client state file (\(error)); move it aside to start afresh (the next run "
                    + "then treats every generation as new, but still refuses lower ones than the server's)")
        }
    }

    public func save(stateDirectory: String) throws(ClientError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            let bytes = Array(try encoder.encode(self)) + [0x0a]
            try FileIO.writeAtomically(bytes, to: stateDirectory + "/" + ClientState.fileName, mode: 0o600)
        } catch {
            throw ClientError("cannot write \(stateDirectory)/\(ClientState.fileName): \(error)")
        }
    }
}
