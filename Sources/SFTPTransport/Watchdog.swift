import Dispatch
import Glibc
import Synchronization

/// Bounds every blocking libssh call without libssh's help.
///
/// libssh 0.10 waits forever for SFTP replies in blocking mode. The watchdog watches the operation that
/// runs on the connection's queue; when it makes no progress for the I/O timeout, or its task is
/// cancelled, the watchdog shuts the socket down, which makes the blocked call fail at once. The
/// connection is unusable afterwards, and ``trip`` tells the operation why it failed.
final class Watchdog: Sendable {
    enum Trip: Sendable { case timeout, cancelled }

    private struct State {
        /// The socket to shut down; -1 before the connection exists and after it is closed.
        var socket: Int32 = -1
        /// Counts operations so that a late check of an earlier one does nothing.
        var operation: UInt64 = 0
        var isActive = false
        var lastProgress: ContinuousClock.Instant = .now
        var trip: Trip?
    }

    private let state = Mutex(State())
    private let timeout: Duration
    private let timerQueue = DispatchQueue(label: "fleet.sftp.watchdog")

    init(timeout: Duration) {
        self.timeout = timeout
    }

    /// Why the connection was cut, if it was.
    var trip: Trip? { state.withLock { $0.trip } }

    /// Arms for a socket once libssh has one; `nil` forgets it before the socket is closed.
    func attach(socket: Int32?) {
        state.withLock { state in
            state.socket = socket ?? -1
            // A cancellation that arrived while libssh was still connecting takes effect now.
            if state.trip != nil, state.socket >= 0 { _ = shutdown(state.socket, Int32(SHUT_RDWR)) }
        }
    }

    /// Marks the start of an operation and schedules its first check.
    func begin() {
        let operation = state.withLock { state in
            state.operation &+= 1
            state.isActive = true
            state.lastProgress = .now
            return state.operation
        }
        schedule(operation, after: timeout)
    }

    /// Records that the running operation moved forward (bytes arrived), postponing the timeout.
    func progress() {
        state.withLock { $0.lastProgress = .now }
    }

    func end() {
        state.withLock { $0.isActive = false }
    }

    /// Cuts the connection now, for example because the awaiting task was cancelled.
    func cut(_ reason: Trip) {
        state.withLock { state in Self.cut(&state, reason) }
    }

    private func schedule(_ operation: UInt64, after delay: Duration) {
        let (seconds, attoseconds) = delay.components
        let nanoseconds = max(0, Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
        timerQueue.asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { [weak self] in
            self?.check(operation)
        }
    }

    private func check(_ operation: UInt64) {
        let remaining: Duration? = state.withLock { state in
            guard state.isActive, state.operation == operation, state.trip == nil else { return nil }
            // Before libssh has a socket there is nothing to cut; its own connect timeout governs.
            if state.socket < 0 { return timeout }
            let idle = ContinuousClock.now - state.lastProgress
            if idle >= timeout {
                Self.cut(&state, .timeout)
                return nil
            }
            return timeout - idle
        }
        if let remaining { schedule(operation, after: remaining) }
    }

    /// Shuts the socket down under the lock, so it cannot race with the close that invalidates it.
    private static func cut(_ state: inout State, _ reason: Trip) {
        guard state.trip == nil else { return }
        state.trip = reason
        if state.socket >= 0 { _ = shutdown(state.socket, Int32(SHUT_RDWR)) }
    }
}
