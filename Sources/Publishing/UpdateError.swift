/// Why `fleet update` refused to start, or stopped before it changed anything: the repository, the command line
/// or the scratch copy, named with what to do. (A host that does not build is not an error: it is a result.)
public struct UpdateError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}
