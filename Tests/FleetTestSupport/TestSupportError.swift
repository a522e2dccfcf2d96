/// A failure to set up or tear down a test fixture; the message says what and shows the tool's output.
public struct TestSupportError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
