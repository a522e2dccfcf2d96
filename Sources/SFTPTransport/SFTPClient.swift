internal import CLibSSH
import Glibc

/// The blocking half of a connection: owns the libssh session and SFTP session and makes every C call.
///
/// Not thread-safe: ``SFTPConnection`` uses it from its serial queue only. Operations block; the
/// ``Watchdog`` bounds them by cutting the socket.
final class SFTPClient {
    let endpoint: SSHEndpoint
    let watchdog: Watchdog
    /// The length of each read request in a pipelined transfer.
    let readRequestSize: UInt32
    private(set) var session: OpaquePointer?
    var sftp: sftp_session?
    /// SFTP's `INIT` is still to be sent, or its `VERSION` to be read (see `SFTPClient+Start.swift`).
    var versionPending = false
    /// Why SFTP could not be started: every later call reports it.
    var startFailure: SSHError?
    /// The extensions the server's `VERSION` offered, by name, with their data (posix-rename@openssh.com: "1").
    var serverExtensions: [String: String] = [:]
    private(set) var hostKeyFingerprint = ""
    /// The id of the last request sent past libssh (see `SFTPClient+RawRequests.swift`): libssh numbers its own
    /// upward from 1, so this range cannot meet one of them.
    private var rawRequestID: UInt32 = 0xF5E7_0000

    init(endpoint: SSHEndpoint, watchdog: Watchdog, readRequestSize: UInt32 = SFTPClient.defaultReadRequestSize) {
        self.endpoint = endpoint
        self.watchdog = watchdog
        self.readRequestSize = max(readRequestSize, 512)
    }

    deinit { close() }

    // MARK: Connecting

    /// Connects, checks the host key against the pin, authenticates, and optionally starts SFTP.
    func connect(openingSFTP: Bool) throws(SSHError) {
        let pinned = try PublicKey(line: endpoint.pinnedHostKey, endpoint: endpoint)
        let identity = try loadIdentity()
        defer { ssh_key_free(identity) }

        guard let session = ssh_new() else {
            throw error(.connectFailed, "connect", detail: "libssh could not allocate a session")
        }
        self.session = session
        try configure(session, hostKeyAlgorithms: pinned.hostKeyAlgorithms)

        let started = ContinuousClock.now
        if ssh_connect(session) != SSH_OK {
            let message = lastSSHError()
            let timedOut = message.contains("Timeout") || ContinuousClock.now - started >= endpoint.connectTimeout
            throw error(
                from: watchdog.trip, otherwise: timedOut ? .timeout : .connectFailed, "connect", detail: message)
        }
        watchdog.progress()
        watchdog.attach(socket: ssh_get_fd(session))

        try verifyHostKey(session, pinned: pinned)

        let outcome = ssh_userauth_publickey(session, nil, identity)
        guard outcome == SSH_AUTH_SUCCESS.rawValue else {
            if outcome == SSH_AUTH_ERROR.rawValue {
                throw failure("authenticate")
            }
            let detail =
                outcome == SSH_AUTH_PARTIAL.rawValue
                ? "the server wants more than the public key in \(endpoint.identityFile)"
                : "the server refused the public key in \(endpoint.identityFile)"
            throw error(.authenticationRefused, "authenticate", detail: detail)
        }
        watchdog.progress()
        try setTimeout(session, endpoint.ioTimeout)

        if openingSFTP { try startSFTP(session) }
    }

    private func loadIdentity() throws(SSHError) -> OpaquePointer {
        var key: OpaquePointer?
        guard ssh_pki_import_privkey_file(endpoint.identityFile, nil, nil, nil, &key) == SSH_OK, let key else {
            let reason = access(endpoint.identityFile, R_OK) == 0 ? "is not an unencrypted private key" : errnoText()
            throw error(
                .invalidConfiguration, "load the identity", path: endpoint.identityFile, detail: reason)
        }
        return key
    }

    private func configure(_ session: OpaquePointer, hostKeyAlgorithms: String) throws(SSHError) {
        var port = UInt32(clamping: endpoint.port)  // unsigned int *
        var processConfig = false  // bool *: never read ~/.ssh/config or /etc/ssh/ssh_config
        var noDelay: Int32 = 1  // int *: small SFTP requests should not wait for Nagle
        var results = [
            ssh_options_set(session, SSH_OPTIONS_HOST, endpoint.host),
            ssh_options_set(session, SSH_OPTIONS_PORT, &port),
            ssh_options_set(session, SSH_OPTIONS_USER, endpoint.user),
            ssh_options_set(session, SSH_OPTIONS_PROCESS_CONFIG, &processConfig),
            // No known_hosts: the pinned key is the only trust anchor.
            ssh_options_set(session, SSH_OPTIONS_KNOWNHOSTS, "/dev/null"),
            ssh_options_set(session, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null"),
            // Ask for the pinned key's algorithm, so a server with several keys presents the pinned one.
            ssh_options_set(session, SSH_OPTIONS_HOSTKEYS, hostKeyAlgorithms),
            ssh_options_set(session, SSH_OPTIONS_NODELAY, &noDelay),
        ]
        results.append(ssh_options_set(session, SSH_OPTIONS_CIPHERS_C_S, Self.ciphers))
        results.append(ssh_options_set(session, SSH_OPTIONS_CIPHERS_S_C, Self.ciphers))
        guard results.allSatisfy({ $0 == SSH_OK }) else {
            throw error(.invalidConfiguration, "configure the connection", detail: lastSSHError())
        }
        try setTimeout(session, endpoint.connectTimeout)
    }

    /// AES-GCM first: with AES-NI it is the fastest for bulk downloads; the rest are OpenSSH's defaults.
    private static let ciphers =
        "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr"

    /// Sets libssh's own timeout, which bounds connect, key exchange and authentication replies.
    private func setTimeout(_ session: OpaquePointer, _ duration: Duration) throws(SSHError) {
        let (seconds, attoseconds) = duration.components
        var wholeSeconds = Int(seconds)  // long *
        var microseconds = Int(attoseconds / 1_000_000_000_000)  // long *
        guard ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &wholeSeconds) == SSH_OK,
            ssh_options_set(session, SSH_OPTIONS_TIMEOUT_USEC, &microseconds) == SSH_OK
        else {
            throw error(.invalidConfiguration, "set the timeout", detail: lastSSHError())
        }
    }

    /// Compares the server's key with the pin before anything depends on trusting the server.
    private func verifyHostKey(_ session: OpaquePointer, pinned: PublicKey) throws(SSHError) {
        var handle: OpaquePointer?
        guard ssh_get_server_publickey(session, &handle) == SSH_OK, let handle else {
            throw failure("read the host key")
        }
        let presented = PublicKey(owning: handle)
        let seen = try presented.fingerprint(endpoint: endpoint)
        hostKeyFingerprint = seen
        guard presented.matches(pinned) else {
            let expected = try pinned.fingerprint(endpoint: endpoint)
            throw error(
                .hostKeyMismatch, "connect",
                detail: "the server presented host key \(seen) (\(presented.typeName)) but \(expected) "
                    + "(\(pinned.typeName)) is pinned, so the client did not authenticate")
        }
    }

    /// Sends `CHANNEL_OPEN`, then asks the kernel to acknowledge what arrives next at once, then waits.
    ///
    /// Right after authentication OpenSSH's sshd sends an unrequested `hostkeys-00@openssh.com` message, and
    /// it runs with Nagle's algorithm on (it sets `TCP_NODELAY` only for a tty or X11). The client has no reply
    /// to that message, so Linux delays its ACK by up to 40 ms, and sshd's `CHANNEL_OPEN_CONFIRMATION` waits
    /// for that ACK: 40 ms on every poll, most of a poll's cost on a LAN. `TCP_QUICKACK` is not sticky (the
    /// kernel drops it again when the client sends), so it is set after the send: the open is started
    /// without blocking, the flag set, and the wait finished blocking. Measured in `bench/README.md`.
    func openChannel(_ channel: ssh_channel) -> Bool {
        guard let session else { return false }
        ssh_set_blocking(session, 0)
        var outcome = ssh_channel_open_session(channel)
        ssh_set_blocking(session, 1)
        if outcome == SSH_AGAIN {
            var on: Int32 = 1
            // Best effort: without it the open is only slower.
            _ = setsockopt(
                ssh_get_fd(session), Int32(IPPROTO_TCP), TCP_QUICKACK, &on, socklen_t(MemoryLayout<Int32>.size))
            outcome = ssh_channel_open_session(channel)
        }
        return outcome == SSH_OK
    }

    /// Releases everything; the socket is forgotten by the watchdog first, so it cannot shut down a reused fd.
    func close() {
        watchdog.attach(socket: nil)
        versionPending = false
        if let sftp {
            sftp_free(sftp)
            self.sftp = nil
        }
        if let session {
            ssh_disconnect(session)
            ssh_free(session)
            self.session = nil
        }
    }

    // MARK: Helpers

    func nextRawRequestID() -> UInt32 {
        rawRequestID &+= 1
        return rawRequestID
    }

    /// The SFTP session, once its start is complete (sending `INIT` and reading `VERSION` if that is still pending).
    func requireSFTP(_ operation: String, _ path: String?) throws(SSHError) -> sftp_session {
        let sftp = try requireChannel(operation, path).sftp
        try finishStartingSFTP()
        return sftp
    }

    /// The SFTP session and its channel, possibly before the server's replies to its start were read: for
    /// requests written straight onto the channel, which may follow the start without waiting for it.
    func requireChannel(_ operation: String, _ path: String?) throws(SSHError) -> (
        sftp: sftp_session, channel: ssh_channel
    ) {
        if let startFailure { throw startFailure }
        guard let sftp, let channel = sftp.pointee.channel else {
            throw error(.notConnected, operation, path: path, detail: "the connection is closed or has no SFTP session")
        }
        return (sftp, channel)
    }

    func open(_ path: String, _ operation: String, flags: Int32, mode: mode_t = 0) throws(SSHError)
        -> sftp_file
    {
        let sftp = try requireSFTP(operation, path)
        guard let file = sftp_open(sftp, path, flags, mode) else { throw failure(operation, path: path) }
        return file
    }

    func size(of file: sftp_file, _ path: String, _ operation: String) throws(SSHError) -> Int64 {
        guard let attributes = sftp_fstat(file) else { throw failure(operation, path: path) }
        defer { sftp_attributes_free(attributes) }
        let converted = RemoteAttributes(attributes.pointee)
        guard converted.kind == .regular else {
            throw error(.sftpFailure, operation, path: path, detail: "it is not a regular file")
        }
        guard attributes.pointee.flags & UInt32(SSH_FILEXFER_ATTR_SIZE) != 0 else {
            throw error(.sftpFailure, operation, path: path, detail: "the server did not report its size")
        }
        return converted.size
    }

    func lastSSHError() -> String {
        guard let session, let text = ssh_get_error(UnsafeMutableRawPointer(session)) else { return "unknown error" }
        let message = String(cString: text)
        return message.isEmpty ? "unknown error" : message
    }

    func errnoText(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }

    func error(
        _ code: SSHError.Code, _ operation: String, path: String? = nil, detail: String, status: Int? = nil
    ) -> SSHError {
        SSHError(
            code, operation, server: endpoint.server, user: endpoint.user, path: path, detail: detail,
            sftpStatus: status)
    }

    func localError(_ operation: String, _ path: String) -> SSHError {
        let code = errno
        return SSHError(
            .localIO, "\(operation) the local file", server: endpoint.server, user: endpoint.user, path: path,
            detail: errnoText(code), localErrno: code)
    }

    /// The watchdog's reason when it cut the connection, else the given code.
    func error(
        from trip: Watchdog.Trip?, otherwise code: SSHError.Code, _ operation: String, path: String? = nil,
        detail: String, status: Int? = nil
    ) -> SSHError {
        switch trip {
        case .timeout:
            let seconds = endpoint.ioTimeout.components.seconds
            return error(
                .timeout, operation, path: path,
                detail: "the server made no progress for \(seconds) s, so the connection was dropped")
        case .cancelled:
            return error(
                .notConnected, operation, path: path, detail: "the task was cancelled, so the connection was dropped")
        case nil:
            return error(code, operation, path: path, detail: detail, status: status)
        }
    }

    /// Turns the state libssh left after a failed call into an error with the right code.
    ///
    /// An SFTP status is only trusted when the SSH layer reports no fatal error: libssh keeps the last status
    /// around, so after a transport failure it would describe an earlier request.
    func failure(_ operation: String, path: String? = nil) -> SSHError {
        let message = lastSSHError()
        let fatal = session.map { ssh_get_error_code(UnsafeMutableRawPointer($0)) == SSH_FATAL.rawValue } ?? true
        guard let sftp, !fatal else { return transportFailure(operation, path: path) }
        let status = Int(sftp_get_error(sftp))
        let (code, phrase) = Self.describe(status: status)
        return error(
            from: watchdog.trip, otherwise: code, operation, path: path,
            detail: "\(phrase) (SFTP status \(status); libssh: \(message))", status: status)
    }

    /// The error for a failure below SFTP (the channel or the socket), where no SFTP status applies.
    func transportFailure(_ operation: String, path: String? = nil) -> SSHError {
        error(from: watchdog.trip, otherwise: .connectionLost, operation, path: path, detail: lastSSHError())
    }

    static func describe(status: Int) -> (SSHError.Code, String) {
        switch Int32(status) {
        case SSH_FX_NO_SUCH_FILE, SSH_FX_NO_SUCH_PATH: (.noSuchFile, "no such file or directory")
        case SSH_FX_PERMISSION_DENIED, SSH_FX_WRITE_PROTECT: (.permissionDenied, "permission denied")
        case SSH_FX_FILE_ALREADY_EXISTS: (.fileExists, "the file already exists")
        case SSH_FX_NO_CONNECTION, SSH_FX_CONNECTION_LOST: (.connectionLost, "the connection was lost")
        case SSH_FX_OP_UNSUPPORTED: (.sftpFailure, "the server does not support this operation")
        case SSH_FX_EOF: (.sftpFailure, "unexpected end of file")
        default: (.sftpFailure, "the server reported a failure")
        }
    }
}
