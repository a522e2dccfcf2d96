import Foundation

/// What a run tells the server, uploaded as `logs/report-<time>-g<generation>.json` beside the full log
/// `logs/log-<time>[-g<generation>].txt`. Names use `<time>` = `YYYYMMDDTHHMMSSmmmZ` (UTC).
///
/// The server treats it as untrusted input: it caps sizes and validates names when it reads it.
public struct RunReport: Codable, Sendable, Equatable {
    public static let currentFormat = 1

    /// Seconds spent in each step that ran.
    public struct Durations: Codable, Sendable, Equatable {
        public var download: Double?
        public var build: Double?
        public var activation: Double?
        public var total: Double = 0
    }

    /// What fetching the closure from the fleet's binary cache cost (counted in ``Durations/download`` too).
    /// Absent in reports of runs without a cache and of clients before it was added (decoded as nil).
    public struct CacheTransfer: Codable, Sendable, Equatable {
        /// Store paths in the system's closure, as the local store counts them (nil: not counted).
        public var closurePaths: Int?
        /// Those the local Nix store lacked: only these were fetched.
        public var missingPaths: Int
        /// Reads of the server's cache: each entry's head (twice for a narinfo over 2 KiB) and each NAR downloaded
        /// from its entry (NARs kept from an interrupted run are not counted). Bytes are what those reads moved.
        public var filesFetched: Int
        public var bytesFetched: Int64
        public var seconds: Double

        public init(closurePaths: Int?, missingPaths: Int, filesFetched: Int, bytesFetched: Int64, seconds: Double) {
            self.closurePaths = closurePaths
            self.missingPaths = missingPaths
            self.filesFetched = filesFetched
            self.bytesFetched = bytesFetched
            self.seconds = seconds
        }

        /// "fetched 54 of 1,507 paths (9.2 MB) in 1.3 s", for the run log and `fleet logs`.
        public var summary: String {
            let of = closurePaths.map { " of \(Self.grouped($0))" } ?? ""
            let size = String(format: "%.1f MB", Double(bytesFetched) / 1_000_000)
            return "fetched \(Self.grouped(missingPaths))\(of) paths (\(size)) in \(String(format: "%.1f", seconds)) s"
        }

        private static func grouped(_ number: Int) -> String {
            var digits = Array(String(number))
            var index = digits.count - 3
            while index > 0 {
                digits.insert(",", at: index)
                index -= 3
            }
            return String(digits)
        }
    }

    /// A host-local overlay built on top of the fleet's system (`fleet-client overlay add`).
    public struct Overlay: Codable, Sendable, Equatable {
        public var name: String
        public var digest: String

        public init(name: String, digest: String) {
            self.name = name
            self.digest = digest
        }
    }

    /// A server of client.toml (`[server]` or a `[[servers]]` mirror) that a run passed over, and why in a few
    /// words: unreachable, a host key other than the pinned one, or a manifest it could not use (stale, older
    /// than one already seen, not verifying, missing).
    public struct SkippedServer: Codable, Sendable, Equatable {
        /// `primary` or the mirror's name.
        public var name: String
        public var reason: String

        public init(name: String, reason: String) {
            self.name = name
            self.reason = reason
        }
    }

    /// Exit statuses of the commands that ran, when they ran.
    public struct ExitCodes: Codable, Sendable, Equatable {
        public var build: Int32?
        public var activation: Int32?
    }

    public var format = currentFormat
    public var host: String
    public var state: RunOutcome
    /// The generation this run was about (the published one), when a manifest was read.
    public var generation: UInt64?
    /// The generation applied before this run.
    public var previousGeneration: UInt64?
    public var sourceCommit: String?
    public var operation: String?
    public var startedAt: String
    public var finishedAt: String
    public var durations = Durations()
    public var cache: CacheTransfer?
    public var exitCodes = ExitCodes()
    /// The running system (`/run/current-system`), the booted one (`/run/booted-system`) and the one built.
    public var currentSystem: String?
    public var bootedSystem: String?
    public var targetSystem: String?
    /// The profile generation made by this run.
    public var profileGeneration: Int?
    /// Whether a reboot is needed to run the profile's system (nil: not a NixOS machine, unknown), and why.
    public var rebootNeeded: Bool?
    public var rebootReason: String?
    public var reason: String?
    /// The name of the log uploaded with this report.
    public var log: String?
    /// How often the host polls (client.toml's `poll_interval_seconds`): `fleet status` judges silence by it.
    public var pollIntervalSeconds: Int?
    /// The fleet-client that wrote it (``FleetVersion``): `fleet status` shows it and warns about a client a
    /// major version behind the server. Absent in reports of clients before 0.5.0 (decoded as nil: unknown).
    public var clientVersion: String? = FleetVersion.current.description
    /// Connection attempts this run needed to reach the server (more than 1 after refused or timed-out tries).
    public var connectAttempts: Int?
    /// Connection attempts that failed since the server was last reached, this run's included.
    public var failedConnectAttempts: Int?
    /// The host-local overlays the run built on top of the fleet's system, by name; absent without overlays and
    /// in reports of clients before them.
    public var overlays: [Overlay]?
    /// The server the run's manifest came from and its uploads go to: `primary` (`[server]`) or a mirror's name
    /// (`[[servers]]`). Absent in reports of clients before mirrors, and of runs that reached no server.
    public var server: String?
    /// Servers the run passed over before (or instead of) ``server``, in the order it tried them; absent when none.
    public var skippedServers: [SkippedServer]?

    public init(host: String, state: RunOutcome, startedAt: String, finishedAt: String) {
        self.host = host
        self.state = state
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Every field is a plain value: encoding cannot fail.
        return Array((try? encoder.encode(self)) ?? Data()) + [0x0a]
    }
}

/// Written on every poll into one of the two slots in `logs/` (``HeartbeatSlot``; older fleet-clients replace
/// `heartbeat.json` by rename), so the server sees a quiet host is alive.
public struct Heartbeat: Codable, Sendable, Equatable {
    public var format = RunReport.currentFormat
    public var host: String
    public var at: String
    /// The generation applied on this machine, if any.
    public var appliedGeneration: UInt64?
    /// The newest generation seen on the server.
    public var seenGeneration: UInt64?
    /// A generation that failed or was rolled back and waits for a newer one.
    public var failedGeneration: UInt64?
    public var lastResult: RunOutcome?
    public var reason: String?
    public var rebootNeeded: Bool?
    /// How often the host polls (client.toml's `poll_interval_seconds`): `fleet status` judges silence by it.
    public var pollIntervalSeconds: Int?
    /// The fleet-client that wrote it, as in ``RunReport/clientVersion``.
    public var clientVersion: String? = FleetVersion.current.description
    /// As in ``RunReport/failedConnectAttempts``.
    public var failedConnectAttempts: Int?
    /// The host-local overlays the applied system was built with, as in ``RunReport/overlays``; absent without.
    public var overlays: [RunReport.Overlay]?
    /// As in ``RunReport/server``.
    public var server: String?
    /// As in ``RunReport/skippedServers``.
    public var skippedServers: [RunReport.SkippedServer]?

    public init(
        host: String, at: String, appliedGeneration: UInt64?, seenGeneration: UInt64?, failedGeneration: UInt64?,
        lastResult: RunOutcome?, reason: String?, rebootNeeded: Bool?
    ) {
        self.host = host
        self.at = at
        self.appliedGeneration = appliedGeneration
        self.seenGeneration = seenGeneration
        self.failedGeneration = failedGeneration
        self.lastResult = lastResult
        self.reason = reason
        self.rebootNeeded = rebootNeeded
    }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data()) + [0x0a]
    }
}
