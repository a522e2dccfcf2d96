/// Why the page cannot start or serve (a refused listening address, a socket from systemd that is not ours).
/// The description is what the user sees.
public struct UpdatePageError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
