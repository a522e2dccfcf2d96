/// How a ``FleetUpdate`` runs: the flags of `fleet update`.
public struct UpdateOptions: Sendable, Equatable {
    /// What happens when some hosts build with the new inputs and others do not.
    public enum Policy: String, Sendable, Codable, CaseIterable {
        /// Publish only when every changed host built; otherwise change nothing (the default).
        case all
        /// Publish each host that built; the others keep their generation and their lock, and a later update
        /// tries the newest inputs for them again.
        case perHost = "per-host"
    }

    /// The inputs to update (`--input`), each an input of some host's flake.lock; empty: all of them.
    public var inputs: [String]
    public var policy: Policy
    /// `--commit`: commit the lock files of the hosts that are published, with the revisions in the message.
    /// Without it they are written into the working tree, uncommitted.
    public var commit: Bool
    /// `--dry-run`: update and build in the scratch copy only; write nothing into the repository, the chroots or
    /// state.db (the builds stay in the build cache under the state directory).
    public var dryRun: Bool
    /// How many hosts to build at once.
    public var jobs: Int

    public init(
        inputs: [String] = [], policy: Policy = .all, commit: Bool = false, dryRun: Bool = false, jobs: Int = 1
    ) {
        self.inputs = inputs
        self.policy = policy
        self.commit = commit
        self.dryRun = dryRun
        self.jobs = jobs
    }
}
