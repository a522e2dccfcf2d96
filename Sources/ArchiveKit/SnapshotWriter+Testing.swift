import CLibArchive
import Glibc

extension SnapshotWriter {
    /// Entry kinds the hostile writer can store; snapshots proper hold only the first two.
    @_spi(Testing)
    public enum RawEntryKind: Sendable, Equatable {
        case directory
        case regularFile
        case symbolicLink(target: String)
        case hardLink(target: String)
        case characterDevice(major: UInt32, minor: UInt32)
        case blockDevice(major: UInt32, minor: UInt32)
        case fifo
    }

    /// Writes an entry with none of the writer's checks, so tests can craft the archives a client must refuse:
    /// "../x", "/etc/x", links, devices, duplicates, setuid bits, orphans.
    ///
    /// The name is stored as given (libarchive adds "/" to directory names). `bytes` are stored as the data of a
    /// regular file and ignored for other kinds. The entry is not remembered, so later checked entries cannot use it
    /// as a parent.
    @_spi(Testing)
    public func addRawEntry(
        path: String, kind: RawEntryKind, permissions: UInt32, bytes: [UInt8] = []
    ) throws(ArchiveError) {
        try checkWriting(entry: path)
        let type: UInt32
        switch kind {
        case .directory: type = FileType.directory
        case .regularFile, .hardLink: type = FileType.regular
        case .symbolicLink: type = FileType.symbolicLink
        case .characterDevice: type = FileType.characterDevice
        case .blockDevice: type = FileType.blockDevice
        case .fifo: type = FileType.fifo
        }
        let size = kind == .regularFile ? Int64(bytes.count) : 0
        try writeHeader(path, name: path, type: type, permissions: permissions, size: size) { entry in
            switch kind {
            case .symbolicLink(let target): archive_entry_set_symlink(entry, target)
            case .hardLink(let target): archive_entry_set_hardlink(entry, target)
            case .characterDevice(let major, let minor), .blockDevice(let major, let minor):
                archive_entry_set_rdevmajor(entry, dev_t(major))
                archive_entry_set_rdevminor(entry, dev_t(minor))
            case .directory, .regularFile, .fifo: break
            }
        }
        guard size > 0 else { return }
        let failure: String? = bytes.withUnsafeBytes { raw in writeData(raw.baseAddress!, raw.count) }
        if let failure { throw fail(.library, path, failure) }
    }
}
