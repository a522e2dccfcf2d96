/// A local problem that stops the client before or outside a run (configuration, state directory, lock).
/// The description is what the user sees.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
