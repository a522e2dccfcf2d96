/// How a run ended. Each has its own exit status, so a timer, a script or the page can tell them apart.
public enum RunOutcome: String, Codable, Sendable, CaseIterable {
    /// Nothing new: the applied generation is current (or the current one already failed and waits for a newer).
    case unchanged
    /// A new generation was built and activated.
    case applied
    /// A build or activation failed; the previous system stays.
    case failed
    /// The new generation was activated, then undone because it could not be confirmed.
    case rolledBack = "rolled-back"
    /// Verification failed: bad signature, wrong host, downgrade, replay, a snapshot that does not match, a
    /// hostile archive, or a server whose host key is not the pinned one. Nothing was applied.
    case refused
    /// The server could not be reached. Nothing changed on this machine.
    case unreachable
    /// Another run holds the lock.
    case locked
    /// Something on this machine stopped the run: no space left, a state directory that cannot be written, a
    /// read-only file system. Not the server's fault and not the generation's: nothing was applied, the
    /// generation is not marked failed, and the next run tries again; but it needs a look, so it is its own
    /// status (a unit fails on it, where "unreachable" would pass).
    case localFailure = "local-failure"
    /// The manifest verified but has expired (or has no expiry after the host saw manifests with one): the server
    /// it came from serves an old one, or someone in the path replays it. Nothing was applied; the host keeps
    /// what it runs and asks again next time. Its own status so that a frozen host is seen (a unit fails on it).
    case stale
    /// The process exit status for this outcome. 0 is the everyday "nothing to do"; 1 and 64 stay with
    /// ArgumentParser (errors and usage).
    public var exitStatus: Int32 {
        switch self {
        case .unchanged: 0
        case .applied: 10
        case .failed: 11
        case .refused: 12
        case .unreachable: 13
        case .locked: 14
        case .rolledBack: 15
        case .localFailure: 16
        case .stale: 17
        }
    }

    /// Whether the machine is in the state the server asked for as far as this outcome tells.
    public var isGood: Bool { self == .unchanged || self == .applied }
}
