import Dispatch

/// An authenticated SSH connection to a pinned server, with an SFTP session, usable from async code.
///
/// libssh blocks, so every call runs on this connection's private serial queue and is awaited through a
/// continuation: the cooperative thread pool never blocks. Calls on one connection run one at a time in
/// order; separate connections run in parallel. Each call that makes no progress for the endpoint's
/// ``SSHEndpoint/ioTimeout`` fails with ``SSHError/Code/timeout``, and cancelling the awaiting task fails
/// it with ``SSHError/Code/notConnected``; either way the connection is dropped, so open a new one.
///
/// Invariant for `@unchecked Sendable`: `client` (which is not thread-safe) is used only inside blocks
/// running on `queue`, apart from `init`, which runs before the connection can be shared; every other
/// stored property is immutable or itself `Sendable`.
public final class SFTPConnection: @unchecked Sendable {
    public let endpoint: SSHEndpoint
    /// The SHA256 fingerprint of the server's host key (which matched the pin).
    public let hostKeyFingerprint: String
    private let client: SFTPClient
    private let queue: DispatchQueue
    private let watchdog: Watchdog

    private init(client: SFTPClient, queue: DispatchQueue, watchdog: Watchdog) {
        self.endpoint = client.endpoint
        self.hostKeyFingerprint = client.hostKeyFingerprint
        self.client = client
        self.queue = queue
        self.watchdog = watchdog
    }

    /// Connects, verifies the server's host key against the pinned key, authenticates, and starts SFTP.
    ///
    /// The host key is checked before authenticating, so a server with another key never sees a signature
    /// from the identity. Starting SFTP opens the channel and starts the `sftp` subsystem (a server that refuses it
    /// fails the connect, with ``SSHError/Code/connectionLost`` and the operation "start SFTP"); SFTP's `INIT`
    /// goes out with the first SFTP call's requests, which saves its round trip. A server whose SFTP ends or
    /// misbehaves before answering `INIT` fails that call, and every call after it, the same way.
    ///
    /// - Parameter openingSFTP: false stops after authentication (a baseline for measuring the SFTP cost);
    ///   the SFTP methods of such a connection throw ``SSHError/Code/notConnected``.
    /// - Throws: ``SSHError`` with ``SSHError/Code/invalidConfiguration``, ``SSHError/Code/connectFailed``,
    ///   ``SSHError/Code/timeout``, ``SSHError/Code/hostKeyMismatch`` or ``SSHError/Code/authenticationRefused``.
    public static func connect(to endpoint: SSHEndpoint, openingSFTP: Bool = true) async throws(SSHError)
        -> SFTPConnection
    {
        try await connect(to: endpoint, openingSFTP: openingSFTP, readRequestSize: SFTPClient.defaultReadRequestSize)
    }

    /// ``connect(to:openingSFTP:)`` with another read request size, so tests can provoke short replies.
    @_spi(Testing) public static func connect(
        to endpoint: SSHEndpoint, openingSFTP: Bool = true, readRequestSize: UInt32
    ) async throws(SSHError) -> SFTPConnection {
        let watchdog = Watchdog(timeout: endpoint.ioTimeout)
        let queue = DispatchQueue(label: "fleet.sftp.\(endpoint.user)@\(endpoint.server)")
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<SFTPClient, SSHError>, Never>) in
                queue.async {
                    watchdog.begin()
                    defer { watchdog.end() }
                    let client = SFTPClient(endpoint: endpoint, watchdog: watchdog, readRequestSize: readRequestSize)
                    do throws(SSHError) {
                        try client.connect(openingSFTP: openingSFTP)
                        continuation.resume(returning: .success(client))
                    } catch {
                        client.close()
                        continuation.resume(returning: .failure(error))
                    }
                }
            }
        } onCancel: {
            watchdog.cut(.cancelled)
        }
        let client = try result.get()
        if let trip = watchdog.trip {
            // Cancelled just after connecting: the socket is already cut, so report it rather than return it.
            throw client.error(from: trip, otherwise: .notConnected, "connect", detail: "the connection was cut")
        }
        return SFTPConnection(client: client, queue: queue, watchdog: watchdog)
    }

    /// Reads a whole remote file into memory.
    ///
    /// A file whose limit fits one read request costs two round trips (open; then fstat, read and close at once).
    ///
    /// - Throws: ``SSHError/Code/limitExceeded`` when the file is larger than `limit` bytes (at most `limit` + 1
    ///   bytes are read),
    ///   ``SSHError/Code/noSuchFile``, ``SSHError/Code/permissionDenied``, or a transport error.
    public func readFile(_ path: String, limit: Int) async throws(SSHError) -> [UInt8] {
        try await perform { client throws(SSHError) in try client.readFile(path, limit: limit) }
    }

    /// Downloads a remote file into a new local file, with several read requests in flight.
    ///
    /// The local file is created with `O_EXCL | O_NOFOLLOW` (mode 0600), so an existing file or link is never
    /// overwritten, and it is removed again when the download fails.
    ///
    /// - Parameters:
    ///   - expectedSize: when given, a remote file of another size is refused before reading.
    ///   - limit: a remote file larger than this is refused before reading.
    ///   - progress: called on the connection's queue with the number of bytes received so far.
    public func download(
        _ remotePath: String, to localPath: String, expectedSize: Int64? = nil, limit: Int64,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) async throws(SSHError) {
        try await perform { client throws(SSHError) in
            try client.download(
                remotePath, to: localPath, expectedSize: expectedSize, limit: limit, progress: progress)
        }
    }

    /// What the server says about `path`, or nil when it does not exist.
    ///
    /// - Parameter followingLinks: false describes a symbolic link itself (`lstat`).
    public func attributes(_ path: String, followingLinks: Bool = true) async throws(SSHError) -> RemoteAttributes? {
        try await perform { client throws(SSHError) in try client.attributes(path, followingLinks: followingLinks) }
    }

    /// The entries of a remote directory, without `.` and `..`, in the server's order.
    ///
    /// - Throws: ``SSHError/Code/limitExceeded`` when there are more than `limit` entries.
    public func listDirectory(_ path: String, limit: Int = 100_000) async throws(SSHError) -> [RemoteDirectoryEntry] {
        try await perform { client throws(SSHError) in try client.listDirectory(path, limit: limit) }
    }

    /// Creates or truncates a remote file (mode 0640, less the server's umask) and writes `bytes`, in two round
    /// trips (the open; every write and the close at once).
    ///
    /// Not atomic: ``replaceFile(_:bytes:through:)`` writes to a temporary name and renames it into place.
    public func writeFile(_ path: String, bytes: [UInt8]) async throws(SSHError) {
        try await perform { client throws(SSHError) in try client.writeFile(path, bytes: bytes) }
    }

    /// Writes `bytes` to `temporary` (mode 0640, less the server's umask), then renames it over `path`, so that a
    /// reader of `path` sees the old file or the new one, never part of one.
    ///
    /// Three round trips: the open; every write and the close at once; the rename, sent only when all of those
    /// succeeded. A failure leaves `path` as it was (and `temporary` behind, to be written again).
    public func replaceFile(_ path: String, bytes: [UInt8], through temporary: String) async throws(SSHError) {
        try await perform { client throws(SSHError) in try client.replaceFile(path, with: bytes, through: temporary) }
    }

    /// Renames a remote file, atomically replacing an existing target.
    ///
    /// Uses OpenSSH's `posix-rename@openssh.com` when the server offers it (OpenSSH always does); libssh 0.10's
    /// own `sftp_rename` sends plain SFTP rename, which fails when the target exists. Without the extension,
    /// that plain rename is the fallback.
    public func rename(from source: String, to target: String) async throws(SSHError) {
        try await perform { client throws(SSHError) in try client.rename(from: source, to: target) }
    }

    /// Removes a remote file (not a directory).
    public func remove(_ path: String) async throws(SSHError) {
        try await perform { client throws(SSHError) in try client.remove(path) }
    }

    /// The server's absolute, resolved form of `path` (inside a chroot, relative to the chroot).
    public func canonicalize(_ path: String) async throws(SSHError) -> String {
        try await perform { client throws(SSHError) in try client.canonicalize(path) }
    }

    /// Whether the server offers an SFTP extension, for example `("posix-rename@openssh.com", "1")`.
    public func supportsExtension(_ name: String, version: String) async throws(SSHError) -> Bool {
        try await perform { client throws(SSHError) in try client.supportsExtension(name, version: version) }
    }

    /// Ends the SFTP session and the SSH connection. Later calls throw ``SSHError/Code/notConnected``.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                self.client.close()
                continuation.resume()
            }
        }
    }

    /// Runs `body` on the queue under the watchdog and hands its result back to the awaiting task.
    func perform<Value: Sendable>(
        _ body: @escaping @Sendable (SFTPClient) throws(SSHError) -> Value
    ) async throws(SSHError) -> Value {
        let watchdog = self.watchdog
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<Value, SSHError>, Never>) in
                queue.async {
                    watchdog.begin()
                    defer { watchdog.end() }
                    continuation.resume(returning: Result { () throws(SSHError) in try body(self.client) })
                }
            }
        } onCancel: {
            watchdog.cut(.cancelled)
        }
        return try result.get()
    }
}
