public import FleetProtocol

/// What `fleet publish` did (or, with `--dry-run`, would do) for one host.
public struct PublishResult: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        case published
        case unchanged
        case refused
        case wouldPublish = "would-publish"
        /// `--dry-run` of a host the build gate holds: published only if it builds, which was not tried.
        case wouldBuild = "would-build"
        /// `--dry-run --build`: it was built, and did not build, so a publish would keep its generation.
        case wouldFail = "would-fail"
        /// The build gate held it back: its configuration did not build (or its cache could not be made).
        case buildFailed = "build-failed"
        /// The build gate held it back without building: this very tree failed to build before (announced then,
        /// not again).
        case stillFailing = "still-failing"
        /// Rollouts: a new generation was written and waits for the host's ring (`fleet rollout`); the host's
        /// manifest still names the generation it had.
        case staged
    }

    public var host: HostName
    public var status: Status
    /// The generation the host's manifest names after this run (nil when it has none).
    public var generation: UInt64?
    /// The generation before this run.
    public var previousGeneration: UInt64?
    public var files: Int
    /// Bytes of file content in the tree and secrets.
    public var bytes: Int64
    /// Size of the compressed snapshot written (published hosts only).
    public var snapshotBytes: Int64?
    /// Why the host was refused.
    public var reason: String?
    public var warnings: [String]
    /// The commit the published manifest names (published hosts only).
    public var sourceCommit: String?
    /// The built system: the one just built, or for an unchanged host the one its manifest names.
    public var toplevel: String?
    /// The build log on the server, when the host was built.
    public var buildLog: String?
    /// Its unchanged manifest was re-signed with a later expiry (freeze protection); nil when not.
    public var resigned: Bool?

    public init(
        host: HostName, status: Status, generation: UInt64? = nil, previousGeneration: UInt64? = nil, files: Int = 0,
        bytes: Int64 = 0, snapshotBytes: Int64? = nil, reason: String? = nil, warnings: [String] = []
    ) {
        self.host = host
        self.status = status
        self.generation = generation
        self.previousGeneration = previousGeneration
        self.files = files
        self.bytes = bytes
        self.snapshotBytes = snapshotBytes
        self.reason = reason
        self.warnings = warnings
    }
}
