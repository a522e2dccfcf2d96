/// Many files at once over the one SFTP session: the requests of many files are in flight together, so the
/// cost is a few round trips per window of files instead of four per file (see `SFTPClient+Batch.swift`).
extension SFTPConnection {
    /// One file of ``downloadFiles(_:)``.
    public struct Download: Sendable, Equatable {
        public let remotePath: String
        /// A new local file: created with `O_EXCL | O_NOFOLLOW` (mode 0600), so nothing existing is overwritten.
        public let localPath: String
        /// A remote file larger than this is refused before reading.
        public let limit: Int64
        /// When given, a remote file of another size is refused before reading.
        public let expectedSize: Int64?

        public init(remotePath: String, localPath: String, limit: Int64, expectedSize: Int64? = nil) {
            self.remotePath = remotePath
            self.localPath = localPath
            self.limit = limit
            self.expectedSize = expectedSize
        }
    }

    /// Reads whole remote files into memory, many at once.
    ///
    /// - Returns: each path's bytes (a path asked twice is read once).
    /// - Throws: the first failure, as ``readFile(_:limit:)`` would throw it for that path (after every reply
    ///   was read and every handle closed, so the connection stays usable unless the failure is a transport
    ///   one): ``SSHError/Code/limitExceeded`` for a file over `limit`, ``SSHError/Code/noSuchFile``, ….
    public func readFiles(_ paths: [String], limit: Int) async throws(SSHError) -> [String: [UInt8]] {
        try await perform { client throws(SSHError) in try client.readFiles(paths, limit: limit) }
    }

    /// Downloads remote files into new local files, many at once, all or nothing.
    ///
    /// The files are made durable together at the end (one `syncfs` of their file system rather than an
    /// `fsync` per file); the caller makes its renames durable. On failure every local file this call created is
    /// removed again, so a failed batch leaves no partial file.
    ///
    /// - Returns: the bytes downloaded.
    public func downloadFiles(_ items: [Download]) async throws(SSHError) -> Int64 {
        try await perform { client throws(SSHError) in try client.downloadFiles(items) }
    }
}
