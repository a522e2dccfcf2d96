public import FleetFiles

extension SHA256Hasher {
    /// The SHA-256 of a file's contents in lowercase hex, read a megabyte at a time (snapshots can be large)
    /// and without following a link at its last component: how a snapshot is checked against its manifest,
    /// wherever that happens.
    public static func hex(ofFile path: String) throws(FileSystemError) -> String {
        var hasher = SHA256Hasher()
        try FileIO.forEachChunk(ofFile: path) { hasher.update($0) }
        return hasher.finalizeHex()
    }
}
