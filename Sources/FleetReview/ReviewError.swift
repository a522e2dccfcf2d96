/// A problem that stops `fleet status`, `logs` or `metrics` as a whole: state.db cannot be used, the review
/// lock cannot be taken, an unknown host is asked for. (A hostile or broken file in one host's `logs/` is never
/// one of these: it becomes a warning for that host.)
public struct ReviewError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) { self.description = description }
}
