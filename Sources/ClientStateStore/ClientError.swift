/// A local problem that stops the client before or outside a run (configuration, state directory, lock).
/// The description is what the user sees.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// The `errno` of the system call that failed, when one did: tells a full disk from anything else.
    public let systemError: Int32?

    public init(_ description: String, systemError: Int32? = nil) {
        self.description = description
        self.systemError = systemError
    }
}
