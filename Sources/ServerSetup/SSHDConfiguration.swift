import Foundation
public import Inventory

/// Renders the sshd configuration that serves every host its chroot over SFTP only.
///
/// Known facts of OpenSSH 9.2 it encodes (checked on Debian 12; docs/deployment.md has the sshd side):
/// `Subsystem sftp internal-sftp` is needed beside `ForceCommand internal-sftp`; `-P symlink,hardlink,…` stops hosts planting links in `logs/`; `-u 0027`
/// sets the upload umask; authorized keys live outside the chroots, root-owned.
public struct SSHDConfiguration: Sendable {
    /// Where a dedicated sshd listens. Without it only the `Match` blocks are rendered, for appending to an
    /// existing sshd_config (whose `Subsystem sftp` line must then be `internal-sftp`).
    public struct Listener: Sendable {
        public var address: String
        public var port: Int
        public var hostKeys: [String]
        public var pidFile: String?

        public init(address: String, port: Int, hostKeys: [String], pidFile: String?) {
            self.address = address
            self.port = port
            self.hostKeys = hostKeys
            self.pidFile = pidFile
        }
    }

    public static let sftpCommand = "internal-sftp -l INFO -u 0027 -P symlink,hardlink,setstat,fsetstat,lsetstat"

    public static func authorizedKeysDirectory(stateDirectory: String) -> String { stateDirectory + "/authorized_keys" }

    /// `<state_dir>/chroots/<user>`: a root-owned link per host user to its chroot, made by `fleet setup`, so
    /// that one `Match` block serves every host (`ChrootDirectory …/%u`). sshd parses its whole configuration
    /// for every connection: a block per host cost 0.2 s of CPU per poll at 10,000 hosts, and an `AllowUsers`
    /// line naming them all 0.3 s more (and 440 MB), against 0.01 s for one block with the users in its pattern.
    public static func chrootLinksDirectory(stateDirectory: String) -> String { stateDirectory + "/chroots" }

    /// Hosts left out of the configuration: without a key nobody can log in as them, and `fleet setup` makes no
    /// user for them, so a Match block would only name a user that does not exist.
    public static func skippedHosts(_ configuration: FleetConfiguration) -> [HostConfiguration] {
        configuration.hosts.filter { $0.publicKey == nil }
    }

    /// How sshd takes a burst of polls: every host's timer firing at once after a server restart or an outage.
    ///
    /// On OpenSSH 9.2 an unchanged poll costs sshd 40–90 ms of CPU (bench/README.md, `bench/herd`). Letting in more
    /// unauthenticated connections than the cores finish within the client's 10 s connect timeout only makes all
    /// of them late; a connection sshd drops at accept costs it almost nothing, and the client retries with
    /// jittered back-off for `connect_retry_seconds`, which turns the burst into a queue. So `full` follows the
    /// server's cores, not the fleet: with 500 hosts at once on 2 cores, 10:30:100 served them all sooner (p50 24 s,
    /// 313 retried) than 50:30:300 (p50 39 s, 466 retried). The fleet's size only lowers the limits for a small
    /// fleet. Only directives OpenSSH has accepted for years are emitted: an older sshd's `sshd -t` must pass.
    public struct BurstSizing: Sendable, Equatable {
        /// The number of hosts and the server's cores sized for.
        public let hosts: Int
        public let cores: Int
        /// `MaxStartups start:rate:full`: unauthenticated connections before random drops begin, the drop
        /// percentage there, and the count at which every new one is dropped.
        public let start: Int
        public let rate: Int
        public let full: Int
        /// `LoginGraceTime`: how long an unauthenticated connection may hold one of the `full` places.
        public let loginGraceSeconds: Int

        /// Handshakes one core completes per second in a burst, conservatively (11–25 measured by bench/herd).
        static let handshakesPerSecondPerCore = 10
        /// Hosts `--hosts` may name: beyond a million, one sshd is not the right design anyway.
        public static let hostRange = 1...1_000_000
        public static let coreRange = 1...1024

        public init(hosts: Int, cores: Int) {
            self.hosts = hosts
            self.cores = cores
            start = min(max(hosts / 10, 10), 5 * cores)
            rate = 30
            full = min(max(hosts, 100), 50 * cores)
            loginGraceSeconds = min(max(2 * full / (Self.handshakesPerSecondPerCore * cores), 30), 120)
        }

        /// The directives, each after comments that say why (for the emitted configuration).
        public var lines: [String] {
            [
                "# Sized for \(hosts) host\(hosts == 1 ? "" : "s") and \(cores) core\(cores == 1 ? "" : "s") (fleet sshd-config --hosts N --cores N).",
                "# MaxStartups: up to \(start) unauthenticated connections are all served; beyond that sshd drops \(rate) % of",
                "# new ones, rising to all of them at \(full) (50 per core: more handshakes at once than the cores finish",
                "# within the client's 10 s connect timeout only make all of them late). A dropped host retries with",
                "# jittered back-off ([server] connect_retry_seconds in client.toml): a burst of polls becomes a queue.",
                "MaxStartups \(start):\(rate):\(full)",
                "# LoginGraceTime: twice the time the last of \(full) waiting handshakes needs at \(Self.handshakesPerSecondPerCore) per second",
                "# and core, at least 30 s; a dead or stalled connection gives its place back sooner than with the default 120 s.",
                "LoginGraceTime \(loginGraceSeconds)",
                "# Not set: PerSourceMaxStartups (hosts behind one NAT address share it) and, on OpenSSH 9.8 or later,",
                "# PerSourcePenalties; there, hosts behind one NAT address belong in PerSourcePenaltyExemptList.",
                "# The listen backlog is OpenSSH's compiled-in 128: see docs/deployment.md, \"Bursts\".",
            ]
        }

        /// One line for standard error: what was chosen and why, in short.
        public var summary: String {
            "sized for \(hosts) host\(hosts == 1 ? "" : "s") and \(cores) core\(cores == 1 ? "" : "s"): MaxStartups \(start):\(rate):\(full), "
                + "LoginGraceTime \(loginGraceSeconds) (hosts dropped in a burst retry with back-off; see the comments)"
        }
    }

    public static func render(_ configuration: FleetConfiguration, listener: Listener?, sizing: BurstSizing? = nil)
        -> String
    {
        let server = configuration.server
        let sizing =
            sizing
            ?? BurstSizing(
                hosts: max(configuration.hosts.count, 1), cores: ProcessInfo.processInfo.activeProcessorCount)
        let hosts = configuration.hosts.filter { $0.publicKey != nil }
        let users = hosts.map(\.unixUser)
        var lines = [
            "# Generated by fleet sshd-config from \(commentSafe(configuration.file)); regenerate rather than edit."
        ]
        if let listener {
            lines += [
                "# A dedicated sshd for the fleet: only the hosts' users below may log in, each into its chroot, SFTP only.",
                "ListenAddress \(listener.address.contains(":") ? "[\(listener.address)]" : listener.address):\(listener.port)",
            ]
            lines += listener.hostKeys.map { "HostKey \($0)" }
            if let pidFile = listener.pidFile { lines.append("PidFile \(pidFile)") }
            lines += [
                "LogLevel VERBOSE",
                "UsePAM no",
                "PermitRootLogin no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "AuthenticationMethods publickey",
                "StrictModes yes",
                // Nobody outside the hosts' Match block has a key file, so nobody else can log in. Not an
                // AllowUsers list of every host user: sshd parses it for each connection, quadratically.
                "AuthorizedKeysFile none",
                users.isEmpty ? "DenyUsers *" : "AllowUsers \(server.userPrefix)*",
                "DisableForwarding yes",
                "PermitTTY no",
                "PermitUserRC no",
                "PermitTunnel no",
                "X11Forwarding no",
                "ClientAliveInterval 30",
                "ClientAliveCountMax 4",
                "Subsystem sftp internal-sftp",
            ]
            lines += sizing.lines
        } else {
            lines.append("# Append to sshd_config; it must also say: Subsystem sftp internal-sftp (not sftp-server).")
            lines.append(
                "# For bursts of polls, its global section should say: MaxStartups \(sizing.start):\(sizing.rate):\(sizing.full) "
                    + "and LoginGraceTime \(sizing.loginGraceSeconds) (\(sizing.hosts) hosts, \(sizing.cores) cores).")
        }
        guard !users.isEmpty else { return lines.joined(separator: "\n") + "\n" }
        lines += [
            "",
            "# The \(users.count) host user\(users.count == 1 ? "" : "s") of \(commentSafe(configuration.file)), each chrooted through its link "
                + "\(chrootLinksDirectory(stateDirectory: server.stateDirectory))/<user> (made by fleet setup).",
            "Match User \(users.joined(separator: ","))",
            "    ChrootDirectory \(chrootLinksDirectory(stateDirectory: server.stateDirectory))/%u",
            "    ForceCommand \(sftpCommand)",
            "    AuthorizedKeysFile \(authorizedKeysDirectory(stateDirectory: server.stateDirectory))/%u",
            "    PasswordAuthentication no",
            "    KbdInteractiveAuthentication no",
            "    PermitTTY no",
            "    DisableForwarding yes",
            "    AllowTcpForwarding no",
            "    AllowAgentForwarding no",
            "    AllowStreamLocalForwarding no",
            "    X11Forwarding no",
            "    PermitTunnel no",
            "    PermitUserRC no",
            "    PermitOpen none",
            "    PermitListen none",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// `text` for a comment line: control characters (a newline would start a directive), backticks and dollar
    /// signs become `?`. sshd ignores the last two in a comment, but this text may be pasted into NixOS'
    /// services.openssh.extraConfig, which nixpkgs puts through an unquoted shell here-document to check it.
    static func commentSafe(_ text: String) -> String {
        String(
            String.UnicodeScalarView(
                text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f || $0 == "`" || $0 == "$" ? "?" : $0 }))
    }
}
