/// Anything that went wrong while writing, reading or extracting an archive.
///
/// The ``description`` is the sentence a sysadmin reads: it names the archive, the entry when there is one, and why.
public struct ArchiveError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure this is, so that callers can tell a hostile archive from a full disk.
    public enum Code: Sendable, Equatable {
        /// An entry is not allowed: unsafe path, link, device, duplicate, missing parent.
        case refusedEntry
        /// A size or count in ``ExtractionLimits`` (or a `limit:` argument) would be exceeded.
        case limitExceeded
        /// libarchive failed: the archive is corrupt, truncated or not an archive.
        case library
        /// A system call failed; ``ArchiveError/systemError`` holds its `errno`.
        case system
        /// A method was called out of order, e.g. after `finish()` or after an earlier failure.
        case misuse
    }

    public let code: Code
    /// The archive file being written, read or extracted.
    public let archivePath: String
    /// The entry's path as stored in the archive, when the failure concerns one entry.
    public let entry: String?
    /// Why, as a clause: "its path has a \"..\" component".
    public let reason: String
    /// The `errno` value for ``Code/system`` failures.
    public let systemError: Int32?

    init(_ code: Code, archive archivePath: String, entry: String? = nil, _ reason: String, systemError: Int32? = nil) {
        self.code = code
        self.archivePath = archivePath
        self.entry = entry
        self.reason = reason
        self.systemError = systemError
    }

    public var description: String {
        let verb =
            switch code {
            case .refusedEntry, .limitExceeded: "Refused"
            case .library, .system, .misuse: "Failed on"
            }
        // `String(reflecting:)` quotes the name and escapes control characters that a hostile archive may hold.
        if let entry {
            return "\(verb) entry \(String(reflecting: entry)) of archive \(archivePath): \(reason)."
        }
        return "\(verb) archive \(archivePath): \(reason)."
    }
}
