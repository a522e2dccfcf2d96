/// Something the server's state (state.db, the chroots' layout) does not allow.
public struct ServerStoreError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) { self.description = description }
}
