public import FleetProtocol
import Glibc

/// What a run did, for the command line to print and turn into an exit status.
public struct RunResult: Sendable, Equatable {
    public var outcome: RunOutcome
    /// One line saying why, for the user and the report.
    public var reason: String
    /// The published generation the run was about, when it read a manifest.
    public var generation: UInt64?
    /// How many times the run tried to connect, when it never got through.
    public var connectAttempts: Int?

    public init(outcome: RunOutcome, reason: String, generation: UInt64? = nil, connectAttempts: Int? = nil) {
        self.outcome = outcome
        self.reason = reason
        self.generation = generation
        self.connectAttempts = connectAttempts
    }
}

extension RunResult {
    /// A run stopped by this machine itself: says so, and that nothing was applied and the next run tries again.
    static func localFailure(_ what: String, generation: UInt64? = nil) -> RunResult {
        RunResult(
            outcome: .localFailure,
            reason: "\(what) — a problem on this host (free some space, or make the state directory writable); "
                + "nothing was applied, and the next run tries again",
            generation: generation)
    }

    /// Whether a failed system call says this machine is out of a resource or cannot write where it must (or is
    /// busy: EBUSY, another activation holding its lock), rather than that what it was given is bad.
    static func isLocalFailure(errno number: Int32) -> Bool {
        [ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EIO, ENOMEM, EMFILE, ENFILE, EFBIG, EBUSY].contains(number)
    }
}
