/// What an archive entry is, as far as fleet cares.
public enum ArchiveEntryKind: Sendable, Equatable {
    case directory
    case regularFile
    case symbolicLink(target: String)
    case hardLink(target: String)
    /// A device node, FIFO, socket or unknown type, described for error messages.
    case other(description: String)
}

/// One entry's header, as ``ArchiveReader/nextEntry()`` returns it.
public struct ArchiveEntryHeader: Sendable, Equatable {
    /// The pathname exactly as stored, e.g. "etc/" for a directory (invalid UTF-8 is repaired with U+FFFD).
    public let path: String
    public let kind: ArchiveEntryKind
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    public let permissions: UInt32
    /// Size of the entry's data as declared in the header (0 when the format leaves it unset).
    public let size: Int64
    /// libarchive's warning for this header, when it read it with `ARCHIVE_WARN` (e.g. a name it could not convert).
    public let warning: String?
    /// False when the stored name was not valid UTF-8 and ``path`` had to be repaired.
    let isPathValidUTF8: Bool
}
