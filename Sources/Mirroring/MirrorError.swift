/// A mirror could not be pushed to or pulled from; the description names the mirror, what failed and the fix.
public struct MirrorError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) { self.description = description }
}
