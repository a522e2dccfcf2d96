/// Why the server cannot be set up as asked. Each message names the path, user or host and the fix.
public struct SetupError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) { self.description = description }
}
