/// The one error type of this module: what went wrong (``code``), where, and libssh's own words.
///
/// Callers branch on ``code``; people read ``description``, a full sentence naming the server, the user
/// and the path involved.
public struct SSHError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is; stable enough for callers and tests to branch on.
    public enum Code: Sendable, Equatable {
        /// The endpoint is unusable before any network I/O: a malformed pinned key or identity file.
        case invalidConfiguration
        /// TCP or the SSH handshake failed (refused, unreachable, protocol error).
        case connectFailed
        /// The server did not answer within the connect or I/O timeout; the connection is dropped.
        case timeout
        /// The server's host key is not the pinned one; nothing was sent that depends on trusting it.
        case hostKeyMismatch
        /// The server refused the identity (wrong key, unknown or locked user).
        case authenticationRefused
        /// The SFTP server reported that the path does not exist.
        case noSuchFile
        /// The SFTP server refused the operation on that path.
        case permissionDenied
        /// The SFTP server reported that the target already exists.
        case fileExists
        /// Any other SFTP failure; ``SSHError/sftpStatus`` holds the protocol's status code.
        case sftpFailure
        /// The SSH transport broke during an operation (peer closed, protocol error).
        case connectionLost
        /// A remote file is larger than the caller allows, or not the size the caller expected.
        case limitExceeded
        /// Reading or writing the local side of a transfer failed; ``SSHError/localErrno`` says why.
        case localIO
        /// The connection was closed, cancelled, or opened without SFTP.
        case notConnected
    }

    public let code: Code
    /// `host:port`, as in the endpoint.
    public let server: String
    public let user: String
    /// The remote (or, for ``Code/localIO``, local) path the operation was about, if any.
    public let path: String?
    /// What was being attempted, as a verb phrase: "read", "rename /logs/a.tmp to".
    public let operation: String
    /// The detail: libssh's `ssh_get_error` text, the SFTP status, or our own explanation.
    public let detail: String
    /// The SFTP status code (`SSH_FX_*`) when the server sent one.
    public let sftpStatus: Int?
    /// `errno` for ``Code/localIO``.
    public let localErrno: Int32?

    init(
        _ code: Code, _ operation: String, server: String, user: String, path: String? = nil, detail: String,
        sftpStatus: Int? = nil, localErrno: Int32? = nil
    ) {
        self.code = code
        self.operation = operation
        self.server = server
        self.user = user
        self.path = path
        self.detail = detail
        self.sftpStatus = sftpStatus
        self.localErrno = localErrno
    }

    public var description: String {
        let target = path.map { " \($0)" } ?? ""
        let trimmed = detail.hasSuffix(".") ? String(detail.dropLast()) : detail
        return "Could not \(operation)\(target) as \(user)@\(server): \(trimmed)."
    }
}
