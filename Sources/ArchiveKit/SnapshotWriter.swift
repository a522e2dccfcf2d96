import CLibArchive
import Glibc

/// Writes a snapshot: a deterministic `.tar.zst` of directories and regular files.
///
/// The same sequence of calls gives the same bytes (with the same libzstd), which is what lets the server keep a
/// host's generation when its tree did not change. Every entry is stored as pax with owner and group 0, no user or
/// group names, modification time 0, and no access or change times, extended attributes or ACLs. An entry is plain
/// ustar unless its name is too long for ustar or not ASCII; a non-ASCII name is stored as its raw bytes
/// (`hdrcharset=BINARY`, see `ArchiveLocale`), so it reads back byte for byte. The caller adds entries in the order
/// it wants them stored (sorted, for determinism); the writer does not sort.
///
/// The writer also refuses what ``SafeExtractor`` would refuse: unsafe names (see `EntryPath`), duplicates, and
/// entries whose parent directory was not added first. A publish therefore fails on the server rather than on
/// every host.
///
/// The file is created with `O_EXCL` and is complete only when ``finish()`` returns. After any error, or when the
/// writer is dropped unfinished, the file is incomplete: the caller removes it and never renames it into place.
public final class SnapshotWriter {
    /// zstd level. On a 170 MB tar here (one core), level 9 ran at 44 MB/s; levels 15 and 19 ran at 6 and 2 MB/s
    /// for output 1% and 5% smaller.
    static let compressionLevel = "9"
    /// Data moves through libarchive in chunks of this size, from `[UInt8]` and from files alike, so that
    /// ``addFile(_:permissions:bytes:)`` and ``addFile(_:permissions:contentsOf:)`` give the same bytes.
    static let chunkSize = 64 << 10
    /// Modification time of every entry.
    static let modificationTime = 0

    /// The archive file being written.
    public let path: String
    private let archive: OpaquePointer
    private let fd: Int32
    private let buffer: UnsafeMutableRawBufferPointer
    private var state = State.writing
    /// False once `close` was called on `fd`, whatever it returned: the number may already belong to another file.
    private var isFileOpen = true
    /// Names added so far, and those that are directories ("" stands for the top level), as `EntryPath.key`s.
    private var names: Set<[UInt8]> = []
    private var directories: Set<[UInt8]> = [[]]

    private enum State {
        case writing
        case failed
        case finished
    }

    /// Creates `path` (which must not exist) and starts the archive.
    ///
    /// - Parameters:
    ///   - path: the new file; its parent directory must exist.
    ///   - permissions: the file's mode, applied regardless of the umask. Snapshots hold secrets, so the default
    ///     is owner-only; the caller sets owner and mode before renaming it into place.
    /// - Throws: ``ArchiveError/Code/system`` when the file cannot be created (for example because it exists).
    public init(path: String, permissions: UInt32 = 0o600) throws(ArchiveError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(0o600))
        guard fd >= 0 else {
            let number = errno
            throw ArchiveError(
                .system, archive: path, "could not create it: \(systemMessage(number))", systemError: number)
        }
        let archive: OpaquePointer
        do throws(ArchiveError) {
            guard fchmod(fd, mode_t(permissions & 0o7777)) == 0 else {
                let number = errno
                throw ArchiveError(
                    .system, archive: path, "could not set its mode: \(systemMessage(number))", systemError: number)
            }
            archive = try Self.openArchive(fd: fd, path: path)
        } catch {
            close(fd)
            unlink(path)  // Created above with O_EXCL and still empty: nobody else's file.
            throw error
        }
        self.path = path
        self.fd = fd
        self.archive = archive
        self.buffer = .allocate(byteCount: Self.chunkSize, alignment: 16)
    }

    deinit {
        if state != .finished {
            // Without this, archive_write_free would close the archive cleanly: it would pad an unfinished file
            // entry with zeros and append the end-of-archive marker, making a truncated snapshot look whole.
            archive_write_fail(archive)
        }
        archive_write_free(archive)
        if isFileOpen { close(fd) }
        buffer.deallocate()
    }

    private static func openArchive(fd: Int32, path: String) throws(ArchiveError) -> OpaquePointer {
        guard let archive = archive_write_new() else {
            throw ArchiveError(.library, archive: path, "libarchive could not allocate a writer")
        }
        let steps: [(String, () -> Int32)] = [
            ("select the pax format", { archive_write_set_format_pax_restricted(archive) }),
            ("add zstd compression", { archive_write_add_filter_zstd(archive) }),
            (
                "set the zstd level",
                { archive_write_set_filter_option(archive, "zstd", "compression-level", compressionLevel) }
            ),
            // Multithreaded zstd output may depend on timing; one thread keeps the bytes reproducible.
            ("set zstd to one thread", { archive_write_set_filter_option(archive, "zstd", "threads", "0") }),
            // No padding after the zstd frame: the file is a clean zstd stream that `zstd -d` accepts.
            ("disable block padding", { archive_write_set_bytes_in_last_block(archive, 1) }),
            ("open the file", { archive_write_open_fd(archive, fd) }),
        ]
        for (step, call) in steps {
            guard ArchiveLocale.writing(call) != ARCHIVE_OK else { continue }
            let message = libraryMessage(archive)
            archive_write_free(archive)
            throw ArchiveError(.library, archive: path, "libarchive could not \(step): \(message)")
        }
        return archive
    }

    /// Adds a directory. Its parent must have been added before (top-level entries have none).
    ///
    /// - Parameters:
    ///   - path: a relative name such as "hosts/web"; a trailing "/" is allowed and not needed.
    ///   - permissions: at most `0o777`.
    public func addDirectory(_ path: String, permissions: UInt32) throws(ArchiveError) {
        let name = try admit(path, isDirectory: true, permissions: permissions)
        try writeHeader(path, name: name, type: FileType.directory, permissions: permissions, size: 0)
        record(name, isDirectory: true)
    }

    /// Adds a regular file holding `bytes`. Its parent must have been added before.
    public func addFile(_ path: String, permissions: UInt32, bytes: [UInt8]) throws(ArchiveError) {
        let name = try admit(path, isDirectory: false, permissions: permissions)
        try writeHeader(path, name: name, type: FileType.regular, permissions: permissions, size: Int64(bytes.count))
        // `withUnsafeBytes` rethrows untyped errors, so the closure returns the failure and it is thrown outside.
        let failure: String? = bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let count = min(Self.chunkSize, raw.count - offset)
                if let failure = writeData(raw.baseAddress! + offset, count) { return failure }
                offset += count
            }
            return nil
        }
        if let failure { throw fail(.library, path, failure) }
        record(name, isDirectory: false)
    }

    /// Adds a regular file with the contents of `sourcePath`, read in chunks so that large files are never held
    /// in memory. A symbolic link at `sourcePath` is followed; deciding which links may be followed is the caller's
    /// job.
    ///
    /// - Throws: when the source is not a regular file, cannot be read, or changes size while it is read (the
    ///   snapshot would hold neither the old contents nor the new).
    public func addFile(_ path: String, permissions: UInt32, contentsOf sourcePath: String) throws(ArchiveError) {
        let name = try admit(path, isDirectory: false, permissions: permissions)
        // O_NONBLOCK only so that opening a FIFO does not hang; it is refused right after.
        let source = open(sourcePath, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard source >= 0 else { throw refuseSource(path, sourcePath, "could not be opened", errno) }
        defer { close(source) }
        try copy(source, sourcePath: sourcePath, into: path, name: name, permissions: permissions)
    }

    /// Adds a regular file with the contents of `source`, a file the caller opened (and checked) itself and has
    /// not read from. `sourcePath` is for messages only; the caller closes `source`.
    ///
    /// - Throws: as ``addFile(_:permissions:contentsOf:)``.
    public func addFile(
        _ path: String, permissions: UInt32, contentsOf source: Int32, sourcePath: String
    ) throws(ArchiveError) {
        let name = try admit(path, isDirectory: false, permissions: permissions)
        try copy(source, sourcePath: sourcePath, into: path, name: name, permissions: permissions)
    }

    /// Writes the header and data of a file entry already admitted as `name`.
    private func copy(
        _ source: Int32, sourcePath: String, into path: String, name: String, permissions: UInt32
    ) throws(ArchiveError) {
        var status = stat()
        guard fstat(source, &status) == 0 else { throw refuseSource(path, sourcePath, "could not be examined", errno) }
        guard UInt32(status.st_mode) & FileType.mask == FileType.regular else {
            throw ArchiveError(
                .refusedEntry, archive: self.path, entry: path, "its source \(sourcePath) is not a regular file")
        }
        let size = Int64(status.st_size)
        try writeHeader(path, name: name, type: FileType.regular, permissions: permissions, size: size)
        var copied: Int64 = 0
        while true {
            // Ask for one byte past the declared size so that growth shows up as data instead of passing unseen.
            let wanted = Int(min(Int64(Self.chunkSize), size - copied + 1))
            let count = readSome(source, buffer.baseAddress!, wanted)
            if count < 0 { throw fail(.system, path, "reading its source \(sourcePath) failed", errno: Int32(-count)) }
            if count == 0 { break }
            if copied + Int64(count) > size {
                throw fail(.system, path, "its source \(sourcePath) grew past \(size) bytes while it was read")
            }
            if let failure = writeData(buffer.baseAddress!, count) { throw fail(.library, path, failure) }
            copied += Int64(count)
        }
        guard copied == size else {
            throw fail(
                .system, path, "its source \(sourcePath) shrank from \(size) to \(copied) bytes while it was read")
        }
        record(name, isDirectory: false)
    }

    /// Ends the archive, flushes it and the file to disk, and closes the file.
    ///
    /// - Throws: when libarchive cannot finish the stream or the data cannot be synced; the file is then incomplete.
    public func finish() throws(ArchiveError) {
        try checkWriting(entry: nil)
        guard ArchiveLocale.writing({ archive_write_close(archive) }) == ARCHIVE_OK else {
            throw fail(.library, nil, "libarchive could not finish it: \(libraryMessage(archive))")
        }
        guard fsync(fd) == 0 else { throw fail(.system, nil, "fsync failed", errno: errno) }
        isFileOpen = false
        guard close(fd) == 0 else { throw fail(.system, nil, "close failed", errno: errno) }
        state = .finished
    }

    // MARK: - Shared with the hostile writer

    /// Fails when the writer cannot take another entry (finished, or broken by an earlier error).
    func checkWriting(entry: String?) throws(ArchiveError) {
        switch state {
        case .writing: return
        case .finished: throw ArchiveError(.misuse, archive: path, entry: entry, "the archive is already finished")
        case .failed:
            throw ArchiveError(.misuse, archive: path, entry: entry, "an earlier error left the archive incomplete")
        }
    }

    /// Writes one entry's header with the fixed owner and times; `configure` adds what the kind needs.
    func writeHeader(
        _ path: String, name: String, type: UInt32, permissions: UInt32, size: Int64,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(ArchiveError) {
        guard let entry = archive_entry_new() else {
            throw fail(.library, path, "libarchive could not allocate an entry")
        }
        defer { archive_entry_free(entry) }
        let result = ArchiveLocale.writing {
            archive_entry_set_pathname(entry, name)
            archive_entry_set_filetype(entry, type)
            archive_entry_set_perm(entry, mode_t(permissions))
            archive_entry_set_size(entry, size)
            archive_entry_set_uid(entry, 0)
            archive_entry_set_gid(entry, 0)
            archive_entry_set_mtime(entry, Self.modificationTime, 0)
            configure(entry)
            return archive_write_header(archive, entry)
        }
        // ARCHIVE_WARN is how a non-ASCII name comes out: not translatable in the POSIX locale, so stored as raw
        // bytes under hdrcharset=BINARY, which is what is wanted (see ArchiveLocale). The header was written.
        guard result == ARCHIVE_OK || result == ARCHIVE_WARN else {
            throw fail(.library, path, "libarchive could not write its header: \(libraryMessage(archive))")
        }
    }

    /// Passes `count` bytes to libarchive. Returns the failure, because callers may be inside `withUnsafeBytes`.
    func writeData(_ base: UnsafeRawPointer, _ count: Int) -> String? {
        let written = ArchiveLocale.writing { archive_write_data(archive, base, count) }
        guard written != count else { return nil }
        if written < 0 { return "libarchive could not write its data: \(libraryMessage(archive))" }
        return "libarchive took \(written) of \(count) bytes of its data"
    }

    /// Marks the archive broken and makes the error to throw.
    func fail(
        _ code: ArchiveError.Code, _ entry: String?, _ reason: String, errno number: Int32? = nil
    ) -> ArchiveError {
        state = .failed
        archive_write_fail(archive)
        guard let number else { return ArchiveError(code, archive: path, entry: entry, reason) }
        return ArchiveError(
            code, archive: path, entry: entry, "\(reason): \(systemMessage(number))", systemError: number)
    }

    func record(_ name: String, isDirectory: Bool) {
        names.insert(EntryPath.key(name))
        if isDirectory { directories.insert(EntryPath.key(name)) }
    }

    // MARK: - Private

    /// Checks an entry before anything is written, so a refusal leaves the archive usable.
    private func admit(_ path: String, isDirectory: Bool, permissions: UInt32) throws(ArchiveError) -> String {
        try checkWriting(entry: path)
        let name: String
        switch EntryPath.normalize(path, isDirectory: isDirectory) {
        case .success(let normalized): name = normalized
        case .failure(let refusal): throw ArchiveError(.refusedEntry, archive: self.path, entry: path, refusal.reason)
        }
        guard permissions & ~0o777 == 0 else {
            let octal = String(permissions, radix: 8)
            throw ArchiveError(
                .refusedEntry, archive: self.path, entry: path,
                "its permissions 0o\(octal) have bits beyond 0o777 (setuid, setgid or sticky)")
        }
        guard !names.contains(EntryPath.key(name)) else {
            throw ArchiveError(.refusedEntry, archive: self.path, entry: path, "it was already added")
        }
        guard directories.contains(EntryPath.parentKey(of: name)) else {
            throw ArchiveError(
                .refusedEntry, archive: self.path, entry: path, "its parent directory was not added before it")
        }
        return name
    }

    private func refuseSource(_ entry: String, _ sourcePath: String, _ what: String, _ number: Int32) -> ArchiveError {
        ArchiveError(
            .system, archive: path, entry: entry, "its source \(sourcePath) \(what): \(systemMessage(number))",
            systemError: number)
    }
}

/// A writer owns a libarchive handle that must be used by one thread at a time.
@available(*, unavailable)
extension SnapshotWriter: Sendable {}
