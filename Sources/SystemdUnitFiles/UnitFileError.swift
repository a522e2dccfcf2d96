/// Why unit files could not be written: a refused directory or target, or the file system's error; the
/// description is what the user sees.
public struct UnitFileError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
