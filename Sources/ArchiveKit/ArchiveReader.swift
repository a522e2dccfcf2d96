import CLibArchive
import Glibc

/// Reads an archive entry by entry: call ``nextEntry()``, then optionally read that entry's data.
///
/// Data that is not read is skipped by the next ``nextEntry()``.
public final class ArchiveReader {
    /// Which archive formats and compressions to accept.
    public enum Formats: Sendable {
        /// tar in all its variants (ustar, pax, GNU), uncompressed or compressed with zstd, gzip, xz or bzip2: what
        /// snapshots are, with less of libarchive facing the input and no external decompression programs.
        case tar
        /// Everything libarchive can detect (zip, cpio, 7z, ISO 9660, ...), with every compression it knows, some
        /// of which it may decompress by running an external program.
        case any
    }

    /// The archive file being read.
    public let path: String
    private let archive: OpaquePointer
    private let fd: Int32
    private let buffer: UnsafeMutableRawBufferPointer
    /// The stored path of the entry whose data may be read next, for error messages.
    private var currentEntry: String?

    static let blockSize = 64 << 10

    /// Opens `path` (following a symbolic link) and detects its format and compression.
    ///
    /// - Throws: when the file cannot be opened, is not a regular file, or is not an archive in `formats`.
    public init(path: String, formats: Formats = .any) throws(ArchiveError) {
        // O_NONBLOCK only so that opening a FIFO does not hang; it is refused right after.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let number = errno
            throw ArchiveError(
                .system, archive: path, "could not open it: \(systemMessage(number))", systemError: number)
        }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            let number = errno
            close(fd)
            throw ArchiveError(.system, archive: path, "fstat failed: \(systemMessage(number))", systemError: number)
        }
        guard UInt32(status.st_mode) & FileType.mask == FileType.regular else {
            close(fd)
            throw ArchiveError(.system, archive: path, "it is not a regular file", systemError: EINVAL)
        }
        guard let archive = archive_read_new() else {
            close(fd)
            throw ArchiveError(.library, archive: path, "libarchive could not allocate a reader")
        }
        let result = ArchiveLocale.reading {
            switch formats {
            case .tar:
                archive_read_support_filter_zstd(archive)
                archive_read_support_filter_gzip(archive)
                archive_read_support_filter_xz(archive)
                archive_read_support_filter_bzip2(archive)
                archive_read_support_format_tar(archive)
            case .any:
                archive_read_support_filter_all(archive)
                archive_read_support_format_all(archive)
            }
            return archive_read_open_fd(archive, fd, Self.blockSize)
        }
        guard result == ARCHIVE_OK else {
            let message = libraryMessage(archive)
            archive_read_free(archive)
            close(fd)
            throw ArchiveError(.library, archive: path, "libarchive could not open it: \(message)")
        }
        self.path = path
        self.fd = fd
        self.archive = archive
        self.buffer = .allocate(byteCount: Self.blockSize, alignment: 16)
    }

    deinit {
        archive_read_free(archive)
        close(fd)  // archive_read_open_fd does not close the descriptor it was given.
        buffer.deallocate()
    }

    /// Reads the next entry's header.
    ///
    /// - Returns: the header, or `nil` at the end of the archive.
    /// - Throws: ``ArchiveError/Code/library`` when the archive is corrupt or truncated.
    public func nextEntry() throws(ArchiveError) -> ArchiveEntryHeader? {
        currentEntry = nil
        var entry: OpaquePointer?
        let result = ArchiveLocale.reading { archive_read_next_header(archive, &entry) }
        if result == ARCHIVE_EOF { return nil }
        guard result == ARCHIVE_OK || result == ARCHIVE_WARN, let entry else {
            throw ArchiveError(
                .library, archive: path, "libarchive could not read the next header: \(libraryMessage(archive))")
        }
        let header = ArchiveLocale.reading {
            Self.header(of: entry, warning: result == ARCHIVE_WARN ? libraryMessage(archive) : nil)
        }
        currentEntry = header.path
        return header
    }

    /// Reads the current entry's data into memory.
    ///
    /// - Throws: ``ArchiveError/Code/limitExceeded`` when there are more than `limit` bytes.
    public func readData(limit: Int) throws(ArchiveError) -> [UInt8] {
        var result: [UInt8] = []
        _ = try stream(limit: Int64(limit)) { chunk throws(ArchiveError) in result.append(contentsOf: chunk) }
        return result
    }

    /// Streams the current entry's data to `destination`, which stays open.
    ///
    /// - Returns: the number of bytes written.
    /// - Throws: ``ArchiveError/Code/limitExceeded`` when there are more than `limit` bytes (those before the limit
    ///   may already be written), or ``ArchiveError/Code/system`` when writing fails.
    public func copyData(toFileDescriptor destination: Int32, limit: Int64) throws(ArchiveError) -> Int64 {
        try stream(limit: limit) { chunk throws(ArchiveError) in
            let number = writeFully(destination, chunk.baseAddress!, chunk.count)
            guard number == 0 else {
                throw ArchiveError(
                    .system, archive: path, entry: currentEntry,
                    "writing its data failed: \(systemMessage(number))", systemError: number)
            }
        }
    }

    /// Passes the current entry's data to `body` chunk by chunk; `body` never sees an empty chunk.
    private func stream(
        limit: Int64, _ body: (UnsafeRawBufferPointer) throws(ArchiveError) -> Void
    ) throws(ArchiveError) -> Int64 {
        guard let entry = currentEntry else {
            throw ArchiveError(.misuse, archive: path, "data was requested with no current entry")
        }
        var total: Int64 = 0
        while true {
            let count = ArchiveLocale.reading { archive_read_data(archive, buffer.baseAddress, buffer.count) }
            if count == 0 { return total }
            guard count > 0 else {
                throw ArchiveError(
                    .library, archive: path, entry: entry,
                    "libarchive could not read its data: \(libraryMessage(archive))")
            }
            total += Int64(count)
            guard total <= limit else {
                throw ArchiveError(
                    .limitExceeded, archive: path, entry: entry, "its data exceeds the limit of \(limit) bytes")
            }
            try body(UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
        }
    }

    private static func header(of entry: OpaquePointer, warning: String?) -> ArchiveEntryHeader {
        let (path, isValid) = string(archive_entry_pathname(entry))
        let type = UInt32(archive_entry_filetype(entry)) & FileType.mask
        // Links are recognised by their targets before the type, since a hard link's type is that of its target.
        let kind: ArchiveEntryKind
        if let target = archive_entry_hardlink(entry) {
            kind = .hardLink(target: string(target).value)
        } else if let target = archive_entry_symlink(entry) {
            kind = .symbolicLink(target: string(target).value)
        } else {
            switch type {
            case FileType.directory: kind = .directory
            case FileType.regular: kind = .regularFile
            case FileType.symbolicLink: kind = .symbolicLink(target: "")
            case FileType.characterDevice, FileType.blockDevice:
                let name = type == FileType.characterDevice ? "character device" : "block device"
                kind = .other(
                    description: "\(name) \(archive_entry_rdevmajor(entry)),\(archive_entry_rdevminor(entry))")
            case FileType.fifo: kind = .other(description: "FIFO")
            case FileType.socket: kind = .other(description: "socket")
            default: kind = .other(description: "file of unknown type 0o\(String(type, radix: 8))")
            }
        }
        return ArchiveEntryHeader(
            path: path, kind: kind, permissions: UInt32(archive_entry_perm(entry)) & 0o7777,
            size: archive_entry_size_is_set(entry) != 0 ? archive_entry_size(entry) : 0, warning: warning,
            isPathValidUTF8: isValid)
    }

    /// A C string as a `String`, and whether it was valid UTF-8 (if not, it is repaired with U+FFFD).
    private static func string(_ pointer: UnsafePointer<CChar>?) -> (value: String, isValid: Bool) {
        guard let pointer else { return ("", true) }
        if let valid = String(validatingCString: pointer) { return (valid, true) }
        return (String(cString: pointer), false)
    }
}

/// A reader owns a libarchive handle that must be used by one thread at a time.
@available(*, unavailable)
extension ArchiveReader: Sendable {}
