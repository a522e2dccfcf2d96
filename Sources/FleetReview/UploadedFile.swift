import FleetFiles

/// A file from `logs/` that passed ``DirectoryHandle``'s checks, and what was kept of it.
struct UploadedFile {
    let bytes: [UInt8]
    /// In the form state.db keeps (see ``FleetFiles/FileIdentity/recorded``).
    let identity: FileIdentity
}

extension FileIdentity {
    /// The part of an identity that state.db keeps of an examined file (`ingest_files`: inode, size and mtime
    /// in nanoseconds); device and change time are zero. Every bookkept identity is in this form, so a file
    /// read now and one bookkept by an earlier run compare equal when inode, size and mtime are the same.
    var recorded: FileIdentity {
        FileIdentity(recordedSize: size, modifiedNanosecondsSinceEpoch: modifiedNanosecondsSinceEpoch, inode: inode)
    }

    /// An identity as state.db keeps it.
    init(recordedSize size: Int64, modifiedNanosecondsSinceEpoch modified: Int64, inode: UInt64) {
        self.init(
            device: 0, inode: inode, size: size, modificationSeconds: modified / 1_000_000_000,
            modificationNanoseconds: modified % 1_000_000_000, changeSeconds: 0, changeNanoseconds: 0)
    }
}
