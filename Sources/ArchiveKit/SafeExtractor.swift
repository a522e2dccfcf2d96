import CLibArchive
import Glibc

/// Bounds on what one extraction may write, so that a snapshot cannot fill the disk or exhaust inodes.
public struct ExtractionLimits: Sendable, Equatable {
    /// Total bytes of file data.
    public var maxBytes: Int64
    /// Number of entries (directories and files).
    public var maxEntries: Int
    /// Bytes of any one file.
    public var maxFileBytes: Int64

    public init(maxBytes: Int64, maxEntries: Int, maxFileBytes: Int64) {
        self.maxBytes = maxBytes
        self.maxEntries = maxEntries
        self.maxFileBytes = maxFileBytes
    }
}

/// What an extraction wrote.
public struct ExtractionSummary: Sendable, Equatable {
    public var files = 0
    public var directories = 0
    /// Bytes of file data.
    public var bytes: Int64 = 0

    public init(files: Int = 0, directories: Int = 0, bytes: Int64 = 0) {
        self.files = files
        self.directories = directories
        self.bytes = bytes
    }
}

/// Unpacks a snapshot on a host, refusing anything but plain directories and regular files inside the destination.
///
/// It does not use libarchive's disk writer: every name is checked here (see `EntryPath`), and every file and
/// directory is created with `openat`/`mkdirat` relative to its parent's descriptor, opened component by component
/// with `O_NOFOLLOW`, so nothing can be written outside the destination even if a check were missed. Refused:
/// absolute names, "." and ".." components, empty components, names that are not UTF-8, symbolic and hard links,
/// devices, FIFOs and sockets, duplicates, entries whose parent directory was not extracted before them, entries
/// libarchive warned about, and anything past ``ExtractionLimits``.
///
/// Modes are masked with `0o755`: setuid, setgid and sticky bits and group or other write permission are dropped,
/// and the executable bits are kept. Directories are also always `rwx` for their owner, so that extraction can
/// fill them. Owners are not restored: everything belongs to the extracting user.
public struct SafeExtractor: Sendable {
    public init() {}

    /// Extracts the tar archive at `archivePath` (plain, or compressed with zstd, gzip, xz or bzip2) into
    /// `destination`, which this creates.
    ///
    /// `destination` must not exist and its parent must; it is created with mode `0o700` (the caller may relax
    /// it). Files and directories are synced to disk before this returns.
    ///
    /// - Returns: what was extracted.
    /// - Throws: ``ArchiveError`` naming the entry at fault. **On a throw, `destination` may hold a partial tree:
    ///   the caller must delete it and never use it.** Nothing is written outside it.
    ///
    /// - Parameter durable: false skips the final `syncfs`, for callers that can extract again after a crash
    ///   (syncfs flushes every dirty page of the filesystem, other programs' too).
    public func extract(
        archivePath: String, into destination: String, limits: ExtractionLimits, durable: Bool = true
    ) throws(ArchiveError) -> ExtractionSummary {
        let reader = try ArchiveReader(path: archivePath, formats: .tar)
        guard mkdir(destination, 0o700) == 0 else {
            throw Extraction.systemError(archivePath, nil, "could not create the destination \(destination)", errno)
        }
        let root = open(destination, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard root >= 0 else {
            throw Extraction.systemError(archivePath, nil, "could not open the destination \(destination)", errno)
        }
        defer { close(root) }
        var extraction = Extraction(reader: reader, root: root, limits: limits)
        while let header = try reader.nextEntry() {
            try extraction.extract(header)
        }
        if durable { try extraction.syncDirectories() }
        return extraction.summary
    }
}

/// The state of one extraction: what exists so far and what it cost.
private struct Extraction {
    let reader: ArchiveReader
    let root: Int32
    let limits: ExtractionLimits
    var summary = ExtractionSummary()
    var entries = 0
    /// Names extracted so far, and those that are directories ("" is the destination), as `EntryPath.key`s.
    var names: Set<[UInt8]> = []
    var directories: Set<[UInt8]> = [[]]
    /// Directories in the order they were made, synced at the end so that their entries are durable.
    var directoryNames: [String] = []

    init(reader: ArchiveReader, root: Int32, limits: ExtractionLimits) {
        self.reader = reader
        self.root = root
        self.limits = limits
    }

    mutating func extract(_ header: ArchiveEntryHeader) throws(ArchiveError) {
        entries += 1
        guard entries <= limits.maxEntries else {
            throw refusal(header, "the archive holds more than \(limits.maxEntries) entries", code: .limitExceeded)
        }
        if let warning = header.warning { throw refusal(header, "libarchive warned about it: \(warning)") }
        guard header.isPathValidUTF8 else { throw refusal(header, "its path is not valid UTF-8") }
        let isDirectory: Bool
        switch header.kind {
        case .directory: isDirectory = true
        case .regularFile: isDirectory = false
        case .symbolicLink(let target):
            throw refusal(header, "it is a symbolic link to \(String(reflecting: target)); snapshots hold no links")
        case .hardLink(let target):
            throw refusal(header, "it is a hard link to \(String(reflecting: target)); snapshots hold no links")
        case .other(let description):
            throw refusal(header, "it is a \(description); snapshots hold only directories and regular files")
        }
        let name: String
        switch EntryPath.normalize(header.path, isDirectory: isDirectory) {
        case .success(let normalized): name = normalized
        case .failure(let refused): throw refusal(header, refused.reason)
        }
        guard !names.contains(EntryPath.key(name)) else {
            throw refusal(header, "it appears more than once in the archive")
        }
        guard directories.contains(EntryPath.parentKey(of: name)) else {
            throw refusal(header, "its parent is not a directory extracted before it")
        }
        let parent = try openParent(of: name, header)
        defer { close(parent) }
        if isDirectory {
            try makeDirectory(EntryPath.lastComponent(of: name), in: parent, header)
            directories.insert(EntryPath.key(name))
            directoryNames.append(name)
            summary.directories += 1
        } else {
            try writeFile(EntryPath.lastComponent(of: name), in: parent, header)
            summary.files += 1
        }
        names.insert(EntryPath.key(name))
    }

    /// Makes the whole extracted tree durable with one `syncfs` of the destination's filesystem: file data and
    /// every directory entry. One call instead of an fsync per file and directory (thousands for a tree) is
    /// what keeps extraction about as fast as the download.
    func syncDirectories() throws(ArchiveError) {
        guard fleet_syncfs(root) == 0 else {
            throw Self.systemError(reader.path, nil, "syncfs of the destination failed", errno)
        }
    }

    // MARK: - Writing

    private func makeDirectory(
        _ component: String, in parent: Int32, _ header: ArchiveEntryHeader
    ) throws(ArchiveError) {
        guard mkdirat(parent, component, 0o700) == 0 else {
            throw Self.systemError(reader.path, header.path, "mkdir failed", errno)
        }
        let fd = openat(parent, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw Self.systemError(reader.path, header.path, "opening the new directory failed", errno)
        }
        defer { close(fd) }
        guard fchmod(fd, mode_t((header.permissions & 0o755) | 0o700)) == 0 else {
            throw Self.systemError(reader.path, header.path, "chmod failed", errno)
        }
    }

    private mutating func writeFile(
        _ component: String, in parent: Int32, _ header: ArchiveEntryHeader
    ) throws(ArchiveError) {
        guard header.size <= limits.maxFileBytes else {
            throw refusal(
                header, "its \(header.size) bytes exceed the limit of \(limits.maxFileBytes)", code: .limitExceeded)
        }
        let remaining = limits.maxBytes - summary.bytes
        guard header.size <= remaining else {
            throw refusal(
                header, "it would take the archive past the limit of \(limits.maxBytes) bytes", code: .limitExceeded)
        }
        let fd = openat(parent, component, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(0o600))
        guard fd >= 0 else { throw Self.systemError(reader.path, header.path, "creating the file failed", errno) }
        var isOpen = true
        defer { if isOpen { close(fd) } }
        // The declared size was checked above, but the data is counted too: the limit holds whatever the header says.
        let written = try reader.copyData(toFileDescriptor: fd, limit: min(limits.maxFileBytes, remaining))
        guard written == header.size else {
            throw refusal(header, "it holds \(written) bytes of data but its header declares \(header.size)")
        }
        guard fchmod(fd, mode_t(header.permissions & 0o755)) == 0 else {
            throw Self.systemError(reader.path, header.path, "chmod failed", errno)
        }
        isOpen = false
        guard close(fd) == 0 else { throw Self.systemError(reader.path, header.path, "close failed", errno) }
        summary.bytes += written
    }

    // MARK: - Walking

    /// Opens the directory that will hold `name`, one component at a time from the destination with `O_NOFOLLOW`.
    private func openParent(of name: String, _ header: ArchiveEntryHeader) throws(ArchiveError) -> Int32 {
        try openDirectory(EntryPath.components(of: name).dropLast(), entry: header.path)
    }

    private func openDirectory(_ components: some Collection<String>, entry: String) throws(ArchiveError) -> Int32 {
        var fd = dup(root)
        guard fd >= 0 else { throw Self.systemError(reader.path, entry, "dup failed", errno) }
        for component in components {
            let next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let number = errno
            close(fd)
            guard next >= 0 else {
                throw Self.systemError(reader.path, entry, "opening its directory \(component) failed", number)
            }
            fd = next
        }
        return fd
    }

    // MARK: - Errors

    private func refusal(
        _ header: ArchiveEntryHeader, _ reason: String, code: ArchiveError.Code = .refusedEntry
    ) -> ArchiveError {
        ArchiveError(code, archive: reader.path, entry: header.path, reason)
    }

    static func systemError(_ archive: String, _ entry: String?, _ what: String, _ number: Int32) -> ArchiveError {
        ArchiveError(.system, archive: archive, entry: entry, "\(what): \(systemMessage(number))", systemError: number)
    }
}
