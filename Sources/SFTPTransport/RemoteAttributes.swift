/// What the SFTP server says about a path: enough to decide whether and how to fetch it.
public struct RemoteAttributes: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular, directory, symbolicLink, other
    }

    public let kind: Kind
    /// Size in bytes; 0 when the server did not say.
    public let size: Int64
    /// Permission bits only (`0o7777` mask), as the server reports them.
    public let permissions: UInt32
    public let uid: UInt32
    public let gid: UInt32
    /// Modification time in seconds since the epoch.
    public let modificationTime: Int64

    public init(
        kind: Kind, size: Int64, permissions: UInt32, uid: UInt32 = 0, gid: UInt32 = 0, modificationTime: Int64 = 0
    ) {
        self.kind = kind
        self.size = size
        self.permissions = permissions
        self.uid = uid
        self.gid = gid
        self.modificationTime = modificationTime
    }
}

/// One entry of a remote directory listing (never `.` or `..`).
public struct RemoteDirectoryEntry: Sendable, Equatable {
    public let name: String
    public let attributes: RemoteAttributes

    public init(name: String, attributes: RemoteAttributes) {
        self.name = name
        self.attributes = attributes
    }
}
