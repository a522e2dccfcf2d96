import FleetProtocol

/// What the suites of real client runs share (a real sshd, real chroots and Unix users, the real Nix): the
/// exit statuses they expect and their helpers.
///
/// Each suite is serialized, and the suites run in parallel with each other and with the rest: every test
/// starts its own sshd and Unix users (names with a random prefix), its own state directories and profiles;
/// what they share is the Nix store, where the same toy system is the same path for everyone. So a test that
/// removes a store path (``forget(_:fleet:)``) builds hosts whose names no other test uses.
protocol ClientRunSuite {}

extension ClientRunSuite {
    static var applied: Int32 { RunOutcome.applied.exitStatus }
    static var unchanged: Int32 { RunOutcome.unchanged.exitStatus }
    static var failed: Int32 { RunOutcome.failed.exitStatus }
    static var refused: Int32 { RunOutcome.refused.exitStatus }
    static var rolledBack: Int32 { RunOutcome.rolledBack.exitStatus }
    static var localFailure: Int32 { RunOutcome.localFailure.exitStatus }
}
