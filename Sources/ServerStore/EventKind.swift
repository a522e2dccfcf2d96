/// Every kind of row in state.db's `events` table, from whichever module records it: the publisher, the
/// build gate, the hooks and the review. One list, so the kinds are greppable and a typo does not compile.
public enum EventKind: String, Sendable, CaseIterable, Codable {
    /// A host was given a new generation.
    case published
    /// A host's tree (or its next generation) was refused; it keeps its generation.
    case refused
    /// A current snapshot no longer matched its manifest (damaged on disk) and was written again, same generation.
    case snapshotRepaired = "snapshot-repaired"
    /// A host's configuration built on the server.
    case built
    /// The same tree was built before; its result was reused.
    case buildReused = "build-reused"
    /// A host's configuration (or its binary cache) failed on the server; it keeps its generation.
    case buildFailed = "build-failed"
    /// A hook failed or timed out.
    case hookFailed = "hook-failed"
    /// Host events the review announces (the hooks' `host-…` events).
    case hostApplied = "host-applied"
    case hostFailed = "host-failed"
    case hostRolledBack = "host-rolled-back"
    case hostSilent = "host-silent"
    case hostStale = "host-stale"
    /// `fleet update` published the hosts that built with new flake inputs (detail: hosts, inputs, commit).
    case updatePublished = "update-published"
    /// `fleet update` found hosts that did not build with new flake inputs (detail: hosts, reason).
    case updateFailed = "update-failed"
    /// A rollout's steps (Publishing's `RolloutController`): halted, promoted to a ring, resumed, aborted.
    case rolloutHalted = "rollout-halted"
    case rolloutPromoted = "rollout-promoted"
    case rolloutResumed = "rollout-resumed"
    case rolloutAborted = "rollout-aborted"
}
