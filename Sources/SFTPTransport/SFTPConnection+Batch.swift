/// Many files at once over the one SFTP session: the requests of many files are in flight together, so the
/// cost is a few round trips per window of files instead of four per file (see `SFTPClient+Batch.swift`).
extension SFTPConnection {
    /// One file of ``downloadFiles(_:)``: the remote bytes from ``offset`` to the end.
    public struct Download: Sendable, Equatable {
        public let remotePath: String
        /// A new local file: created with `O_EXCL | O_NOFOLLOW` (mode 0600), so nothing existing is overwritten.
        /// It holds the remote bytes `offset..<size`, the one at `offset` first.
        public let localPath: String
        /// A remote file larger than this (whole, not just the part downloaded) is refused before reading.
        public let limit: Int64
        /// When given, a remote file of another size (whole, whatever the offset) is refused before reading.
        public let expectedSize: Int64?
        /// Where the download starts in the remote file, to fetch only a tail (say, what another source did not
        /// have). A remote file shorter than this is refused; exactly this long gives an empty local file.
        public let offset: Int64

        public init(
            remotePath: String, localPath: String, limit: Int64, expectedSize: Int64? = nil, offset: Int64 = 0
        ) {
            precondition(offset >= 0, "a download starts within the file")
            self.remotePath = remotePath
            self.localPath = localPath
            self.limit = limit
            self.expectedSize = expectedSize
            self.offset = offset
        }
    }

    /// The start of a remote file, from ``readFileHeads(_:length:limit:)``.
    public struct FileHead: Sendable, Equatable {
        /// The file's first bytes: `length` of them, or the whole file when it is shorter.
        public let bytes: [UInt8]
        /// The whole file's size, as the server reported it when the file was opened.
        public let size: Int64

        public init(bytes: [UInt8], size: Int64) {
            self.bytes = bytes
            self.size = size
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

    /// Reads the first `length` bytes of remote files (all of a shorter one) into memory, many at once, with
    /// their whole sizes: no read is sent past `length`, so a large file costs only its head.
    ///
    /// - Returns: each path's head (a path asked twice is read once).
    /// - Throws: as ``readFiles(_:limit:)``; `limit` is about the whole file, so a file over it is refused
    ///   (``SSHError/Code/limitExceeded``) even though only its head would be read.
    public func readFileHeads(_ paths: [String], length: Int, limit: Int64) async throws(SSHError) -> [String:
        FileHead]
    {
        try await perform { client throws(SSHError) in try client.readFileHeads(paths, length: length, limit: limit) }
    }

    /// Downloads remote files (or their tails, see ``Download/offset``) into new local files, many at once, all
    /// or nothing.
    ///
    /// The files are made durable together at the end (one `syncfs` of their file system rather than an
    /// `fsync` per file); the caller makes its renames durable. On failure every local file this call created is
    /// removed again, so a failed batch leaves no partial file.
    ///
    /// - Returns: the bytes written locally (each file's size less its offset).
    public func downloadFiles(_ items: [Download]) async throws(SSHError) -> Int64 {
        try await perform { client throws(SSHError) in try client.downloadFiles(items) }
    }
}
