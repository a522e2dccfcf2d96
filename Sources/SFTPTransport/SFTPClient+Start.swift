internal import CLibSSH

/// Starting SFTP without a round trip of its own for `INIT`.
///
/// The classic start costs three round trips after authentication: the channel open, the `subsystem` request,
/// then `INIT` and the server's `VERSION`. The first two cannot overlap: the request names the server's channel
/// number, which the open's reply brings. Nor can `INIT` go out behind the request: OpenSSH's sshd opens a
/// session channel with a window of 0 bytes and grants one only once the subsystem runs, so libssh's write
/// would wait for that (and, from a server that refuses the subsystem, wait until the I/O timeout). So the
/// request is answered here as before (a refusal fails the connect at once), and `INIT` is sent with the first
/// SFTP call's own requests: requests written straight onto the channel (`SFTPClient+RawRequests.swift`) go
/// out behind it without waiting for `VERSION`, so a poll's first requests share its round trip.
///
/// libssh's `sftp_init` is not used (it would send `INIT` and wait): the session's version is set here, and
/// the server's extensions are kept in ``serverExtensions``.
extension SFTPClient {
    /// The only SFTP version this client speaks (and the only one OpenSSH's server offers).
    static let sftpVersion: UInt32 = 3

    /// `INIT`, framed.
    static var initPacket: [UInt8] {
        var packet: [UInt8] = []
        packet.appendBigEndian(UInt32(5))
        packet.append(1)  // SSH_FXP_INIT
        packet.appendBigEndian(sftpVersion)
        return packet
    }

    /// Opens the session channel and starts the `sftp` subsystem on it; `INIT` waits for the first SFTP call.
    ///
    /// `sftp_new` would open the channel itself; it is opened here instead so that the reply is not held back by a
    /// delayed ACK (see ``openChannel(_:)``).
    func startSFTP(_ session: OpaquePointer) throws(SSHError) {
        guard let channel = ssh_channel_new(session) else { throw failure("open the SFTP channel") }
        guard openChannel(channel) else {
            let error = failure("start SFTP")
            ssh_channel_free(channel)
            throw error
        }
        guard ssh_channel_request_sftp(channel) == SSH_OK else {
            let error = subsystemRefusal()
            ssh_channel_free(channel)
            throw error
        }
        guard let sftp = sftp_new_channel(session, channel) else {
            ssh_channel_free(channel)
            throw failure("start SFTP")
        }
        self.sftp = sftp  // owns the channel from here on: sftp_free frees it
        versionPending = true
    }

    /// Sends `INIT` on its own and reads `VERSION`, if the start is still pending: for libssh's own SFTP calls,
    /// which must not begin before it.
    func finishStartingSFTP() throws(SSHError) {
        guard versionPending, let channel = sftp?.pointee.channel else { return }
        let packet = Self.initPacket
        let written = packet.withUnsafeBytes { ssh_channel_write(channel, $0.baseAddress, UInt32($0.count)) }
        guard written == packet.count else {
            let error = transportFailure("start SFTP")
            startFailure = error
            close()
            throw error
        }
        try readVersion()
    }

    /// Reads the server's `VERSION`, the answer to the `INIT` just sent (by ``finishStartingSFTP()``, or ahead
    /// of requests written straight onto the channel).
    ///
    /// A failure here is kept in ``startFailure`` and closes the connection: every later call reports it.
    func readVersion() throws(SSHError) {
        guard versionPending else { return }
        versionPending = false
        do throws(SSHError) {
            guard let sftp, let channel = sftp.pointee.channel else {
                throw error(.notConnected, "start SFTP", detail: "the connection is closed")
            }
            var version = RawReader(try readPacket(channel, operation: "start SFTP", path: nil))
            guard version.byte() == 2, let number = version.uint32() else {  // SSH_FXP_VERSION
                throw error(
                    .connectionLost, "start SFTP", detail: "the server did not answer SFTP's INIT with its VERSION")
            }
            guard number == Self.sftpVersion else {
                throw error(
                    .sftpFailure, "start SFTP",
                    detail: "the server speaks SFTP version \(number), and this client only version \(Self.sftpVersion)"
                )
            }
            var extensions: [String: String] = [:]
            while let name = version.string() {
                guard let data = version.string() else {
                    throw error(.connectionLost, "start SFTP", detail: "the server's VERSION is cut short")
                }
                extensions[name] = data
            }
            serverExtensions = extensions
            // What sftp_init would have set: libssh's own SFTP calls parse replies by this version.
            sftp.pointee.version = Int32(number)
            sftp.pointee.server_version = Int32(number)
            sftp.pointee.client_version = Int32(Self.sftpVersion)
            watchdog.progress()
        } catch {
            startFailure = error
            close()
            throw error
        }
    }

    /// The error of a `subsystem` request that failed: refused by the server, or lost with the connection.
    private func subsystemRefusal() -> SSHError {
        guard let session, ssh_get_error_code(UnsafeMutableRawPointer(session)) == SSH_REQUEST_DENIED.rawValue
        else { return transportFailure("start SFTP") }
        return error(
            from: watchdog.trip, otherwise: .connectionLost, "start SFTP",
            detail: "the server refused to start its sftp subsystem (libssh: \(lastSSHError())); its sshd_config "
                + "needs `Subsystem sftp internal-sftp` for this user, as `fleet sshd-config` writes it")
    }
}
