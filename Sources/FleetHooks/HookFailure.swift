/// Why a hook did not succeed: it could not be started, exited non-zero, or ran past its timeout.
///
/// A failure is logged (standard error and a `hook-failed` row in state.db's `events` table) and never stops
/// what fired the event.
public struct HookFailure: Error, CustomStringConvertible, Sendable, Equatable {
    /// The hook's command line, as fleet.toml gives it.
    public let command: String
    public let reason: String
    /// Whether the hook ran past its timeout (and was killed with its process group).
    public let timedOut: Bool

    public init(command: String, reason: String, timedOut: Bool = false) {
        self.command = command
        self.reason = reason
        self.timedOut = timedOut
    }

    public var description: String { "hook `\(command)` \(reason)" }
}
