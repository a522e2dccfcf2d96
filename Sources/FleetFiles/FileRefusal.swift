/// Why a file of an untrusted directory was not read (see ``DirectoryHandle``).
public struct FileRefusal: Error, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Refused for good while it stays as it is (a link, a FIFO, too large…).
        case refused
        /// Could not be read now (out of file descriptors, an I/O error): worth trying again later.
        case transient
        /// Gone between the listing and the open (removed, or being replaced): nothing to say.
        case vanished
    }

    public let kind: Kind
    /// Why, in words that follow the file's name: "is a symbolic link: not followed".
    public let reason: String
    /// What the file was when it was refused, when that is known: a caller bookkeeps the refusal by it, so
    /// that the same file is not examined again.
    public let status: FileStatus?
    /// The system's own words when a call failed ("Too many open files"), for callers that phrase it their way.
    public let systemReason: String?

    public init(_ kind: Kind, _ reason: String, status: FileStatus? = nil, systemReason: String? = nil) {
        self.kind = kind
        self.reason = reason
        self.status = status
        self.systemReason = systemReason
    }
}
