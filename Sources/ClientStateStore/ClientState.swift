import FleetFiles
public import FleetProtocol
import Foundation

/// What the client remembers between runs, in `<state_dir>/state.json`.
///
/// Written atomically (temporary file, fsync, rename) whenever a run changes what the client decides by, so a
/// crash leaves the previous state. The "last seen" fields are what make downgrades and replays detectable.
/// A run that changes only the record of the run itself (an unchanged poll) writes that record to
/// `last-run.json` instead, without fsync; see ``save(stateDirectory:replacing:)``.
public struct ClientState: Codable, Sendable, Equatable {
    /// A generation the client has verified: enough to recognise the same one, or a forged twin, later.
    public typealias Seen = ManifestPolicy.Seen

    /// A generation applied to this machine.
    public struct Applied: Codable, Sendable, Equatable {
        public var generation: UInt64
        public var contentDigest: String
        public var sourceCommit: String
        /// The system store path the profile points to.
        public var system: String
        public var operation: String
        public var at: String
        /// The digest of the host-local overlays built on top (OverlayStore.setDigest); nil: none.
        public var overlays: String?

        public init(
            generation: UInt64, contentDigest: String, sourceCommit: String, system: String, operation: String,
            at: String, overlays: String? = nil
        ) {
            self.generation = generation
            self.contentDigest = contentDigest
            self.sourceCommit = sourceCommit
            self.system = system
            self.operation = operation
            self.at = at
            self.overlays = overlays
        }
    }

    /// A generation that failed (or was rolled back); it is not tried again until a newer one is published.
    public struct Failed: Codable, Sendable, Equatable {
        public var generation: UInt64
        public var contentDigest: String
        public var state: RunOutcome
        public var reason: String
        public var at: String
        /// The digest of the host-local overlays it failed with (nil: none): other overlays try it again.
        public var overlays: String?

        public init(
            generation: UInt64, contentDigest: String, state: RunOutcome, reason: String, at: String,
            overlays: String? = nil
        ) {
            self.generation = generation
            self.contentDigest = contentDigest
            self.state = state
            self.reason = reason
            self.at = at
            self.overlays = overlays
        }
    }

    /// The newest manifest that verified.
    public var lastSeen: Seen?
    /// True once a manifest with an expiry verified here: from then on a manifest without one is refused as stale
    /// (a replayed pre-upgrade manifest cannot freeze the host). Nil in state files from before expiries.
    public var manifestsExpire: Bool?
    public var applied: Applied?
    public var failed: Failed?
    /// The outcome of the last run, whatever it was.
    public var lastResult: RunOutcome?
    public var lastReason: String?
    /// When the last run finished.
    public var lastRunAt: String?
    /// When the server was last reached.
    public var lastContactAt: String?
    /// Connection attempts that failed since the server was last reached (retries within runs and runs that never
    /// got through): the next heartbeat or report tells the server, which shows it.
    public var failedConnectAttempts: Int?
    /// The server the last run's manifest came from: `primary` or a `[[servers]]` mirror's name (nil: none).
    public var lastServer: String?
    /// Per server (`primary` or a mirror's name), the heartbeat slot that holds the last heartbeat written there
    /// whole: the next poll of that server writes the other one, so a failed write never spoils it. Absent: none
    /// yet, slot a next.
    public var heartbeatSlots: [String: HeartbeatSlot]?
    /// Why the machine needs a reboot to run its profile's system, when it does.
    public var rebootNeeded: String?
    /// The system the client last rebooted the machine for (never twice for the same one).
    public var rebootRequestedFor: String?

    public init() {}

    public static let fileName = "state.json"

    /// Reads `state.json`, with the record of `last-run.json` when that is newer; a missing `state.json` is the
    /// empty state of a new host, an unreadable one an error.
    public static func load(stateDirectory: String) throws(ClientError) -> ClientState {
        var state = try loadDecisions(stateDirectory: stateDirectory)
        if let record = LastRunRecord.load(stateDirectory: stateDirectory), record.isNewer(than: state.runRecord) {
            state.runRecord = record
        }
        return state
    }

    /// `state.json` alone.
    private static func loadDecisions(stateDirectory: String) throws(ClientError) -> ClientState {
        let path = stateDirectory + "/" + fileName
        let bytes: [UInt8]
        do {
            guard try FileStatus.of(path) != nil else { return ClientState() }
            bytes = try FileIO.readNoFollow(path, limit: 1 << 20)
        } catch {
            throw ClientError("cannot read \(path): \(error)")
        }
        let state: ClientState
        do {
            state = try JSONDecoder().decode(ClientState.self, from: Data(bytes))
        } catch {
            throw ClientError(
                "\(path) is not a fleet-client state file (\(error)); move it aside to start afresh (the next run "
                    + "then treats every generation as new, but still refuses lower ones than the server's)")
        }
        let generations = [
            ("lastSeen.generation", state.lastSeen?.generation), ("applied.generation", state.applied?.generation),
            ("failed.generation", state.failed?.generation),
        ]
        for case (let key, let generation?) in generations {
            if let problem = Generation.problem(with: generation, key) {
                throw ClientError(
                    "\(path): \(problem); move the file aside to start afresh (the next run then treats every "
                        + "generation as new, but still refuses lower ones than the server's)")
            }
        }
        return state
    }

    /// Removes temporary files a crashed run left beside `state.json`, `last-run.json` and `progress.json`.
    ///
    /// Their names carry the writer's PID, and PIDs repeat after a reboot: a leftover would make the next save
    /// by a process with that PID fail. Call it holding the run lock, so that no save is under way.
    public static func removeLeftovers(stateDirectory: String) {
        let suffixes = ["-" + fileName, "-" + LastRunRecord.fileName, "-" + RunProgress.fileName]
        for entry in (try? FileIO.listDirectory(stateDirectory)) ?? []
        where entry.hasPrefix(FileIO.temporaryPrefix) && suffixes.contains(where: entry.hasSuffix) {
            _ = try? FileIO.removeFile(stateDirectory + "/" + entry)
        }
    }

    /// Saves the state.
    ///
    /// - Parameter saved: the state as this run loaded it. When only the record of the run differs from it,
    ///   that record goes to `last-run.json`, written atomically but without fsync: an unchanged poll then
    ///   costs no disk flush. A crash may lose that record, never anything a decision depends on. Otherwise
    ///   everything goes to `state.json` with fsync, and `last-run.json` is removed.
    public func save(stateDirectory: String, replacing saved: ClientState? = nil) throws(ClientError) {
        var decisions = self
        decisions.runRecord = LastRunRecord()
        var savedDecisions = saved
        savedDecisions?.runRecord = LastRunRecord()
        if let savedDecisions, savedDecisions == decisions {
            try runRecord.save(stateDirectory: stateDirectory)
            return
        }
        let path = stateDirectory + "/" + ClientState.fileName
        do {
            try FileIO.writeAtomically(Self.encoded(self), to: path, mode: 0o644)
        } catch {
            throw ClientError("cannot write \(path): \(error)")
        }
        // Stale from here on; were the removal lost in a crash, its older lastRunAt keeps it from being used.
        _ = try? FileIO.removeFile(stateDirectory + "/" + LastRunRecord.fileName)
    }

    static func encoded<Value: Encodable>(_ value: Value) throws(ClientError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(value)) + [0x0a]
        } catch {
            throw ClientError("cannot encode the client state: \(error)")
        }
    }

    /// The fields that say how the last run went; nothing is decided by them.
    var runRecord: LastRunRecord {
        get {
            LastRunRecord(
                lastResult: lastResult, lastReason: lastReason, lastRunAt: lastRunAt, lastContactAt: lastContactAt,
                failedConnectAttempts: failedConnectAttempts, lastServer: lastServer, heartbeatSlots: heartbeatSlots)
        }
        set {
            lastResult = newValue.lastResult
            lastReason = newValue.lastReason
            lastRunAt = newValue.lastRunAt
            lastContactAt = newValue.lastContactAt
            failedConnectAttempts = newValue.failedConnectAttempts
            lastServer = newValue.lastServer
            heartbeatSlots = newValue.heartbeatSlots
        }
    }
}
