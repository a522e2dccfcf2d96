/// Where and as whom to connect, and which server key to accept: everything a connection needs.
///
/// There is no known_hosts file and no trust on first use: ``pinnedHostKey`` is the only key accepted.
public struct SSHEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    /// Path to an OpenSSH private key without a passphrase, such as `/etc/ssh/ssh_host_ed25519_key`.
    public var identityFile: String
    /// The server's public key as one OpenSSH line: `ssh-ed25519 AAAA… [comment]`.
    public var pinnedHostKey: String
    /// Bounds TCP connect plus the SSH handshake, and each authentication round trip.
    public var connectTimeout: Duration
    /// The longest an operation may go without progress before the connection is dropped.
    public var ioTimeout: Duration

    public init(
        host: String, port: Int = 22, user: String, identityFile: String, pinnedHostKey: String,
        connectTimeout: Duration = .seconds(10), ioTimeout: Duration = .seconds(30)
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.identityFile = identityFile
        self.pinnedHostKey = pinnedHostKey
        self.connectTimeout = connectTimeout
        self.ioTimeout = ioTimeout
    }

    /// `host:port`, bracketing IPv6 literals, as used in error messages.
    public var server: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The SHA256 fingerprint of ``pinnedHostKey`` in `ssh-keygen -lf` form (`SHA256:…`, no padding).
    ///
    /// - Throws: ``SSHError/Code/invalidConfiguration`` when the line is not a public key libssh can read.
    public func pinnedHostKeyFingerprint() throws(SSHError) -> String {
        let key = try PublicKey(line: pinnedHostKey, endpoint: self)
        return try key.fingerprint(endpoint: self)
    }
}
