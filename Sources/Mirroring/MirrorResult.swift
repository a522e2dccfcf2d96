/// What `fleet mirror push` or `pull-logs` did with one mirror (one line of the table, one object of `--json`).
public struct MirrorResult: Sendable, Equatable, Codable {
    public var mirror: String
    /// `push` or `pull-logs`.
    public var action: String
    public var succeeded: Bool
    /// Why it failed: the mirror, what failed and the fix.
    public var error: String?
    /// The rsync passes that completed, in order (push: `groups`, `data`, `manifests`, `cleanup`; pull: `logs`, then
    /// `prune` when old reports and logs were deleted on the mirror).
    public var passes: [String]
    public var seconds: Double
    /// What succeeded but needs a look: files on the mirror that were left there (pull-logs: over the size limit),
    /// each naming the mirror, the host, the file and why.
    public var warnings: [String]
    /// pull-logs: old reports and logs deleted on the mirror (ingested, beyond `[server] logs_keep`).
    public var pruned = 0

    public init(
        mirror: String, action: String, succeeded: Bool, error: String?, passes: [String], seconds: Double,
        warnings: [String] = []
    ) {
        self.mirror = mirror
        self.action = action
        self.succeeded = succeeded
        self.error = error
        self.passes = passes
        self.seconds = seconds
        self.warnings = warnings
    }
}
