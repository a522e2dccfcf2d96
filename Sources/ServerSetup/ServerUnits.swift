import FleetFiles
public import SystemdUnitFiles

/// The systemd units of a fleet server without the NixOS module (`fleet install-units`, Debian):
///
/// - `fleet-sshd.service`: the dedicated sshd (`sshd -D -e -f <sshd_config>`), its configuration checked with
///   `sshd -t` first, and its host key made when missing (what Debian's `ssh-keygen -A` does for the system
///   sshd, here for the key the dedicated sshd's configuration names). Left out with `withSSHD == false`, for a
///   server whose system sshd serves the chroots (`fleet sshd-config --match-only`);
/// - `fleet-publish.service`: `fleet setup` then `fleet publish`; `fleet-publish.timer` only when a publish
///   interval is given (a publish timer when wanted; `systemctl start fleet-publish` works either way);
/// - `fleet-review.service` + `fleet-review.timer`: `fleet review --metrics-file …` every interval, so that host
///   events reach the hooks and the metrics file stays fresh without anyone running `fleet status`;
/// - `fleet-refresh.service` + `fleet-refresh.timer`: `fleet publish --refresh` every quarter hour, which re-signs
///   manifests whose expiry is less than half of `manifest_ttl_seconds` away (freeze protection), so that hosts
///   never see their current manifest expire, whatever the publish timer does (every TTL fleet.toml allows,
///   an hour at least, gets two or more chances);
/// - `fleet-update.service` + `fleet-update.timer`, only when an update interval is given: `fleet update
///   --commit --policy <policy>`, which publishes hosts whose new flake inputs built (docs/updates.md).
///
/// `nixos/server.nix` declares fleet-review and fleet-refresh the same way for NixOS servers.
///
/// Every value that goes into a unit file is checked first, naming its option: paths must be absolute and made
/// of characters that mean nothing to systemd or to the shell of the key's ExecStartPre (no whitespace, quotes,
/// `%`, `$`, `\` or control characters, so no newline can start a directive of its own), and intervals must be
/// plain systemd time spans.
///
/// Writing the files, the path rule and time spans are SystemdUnitFiles', shared with the host's units.
public struct ServerUnits: Sendable, Equatable {
    public typealias Unit = UnitFile
    public typealias Installed = UnitFile.Installed

    /// The paths and intervals the units are made of. Each path is absolute; `checked()` says which are not.
    public struct Options: Sendable, Equatable {
        /// The fleet executable.
        public var binary: String
        /// The fleet repository (fleet.toml), passed as `--repo`.
        public var repository: String
        /// Set as FLEET_CHROOT_ROOT / FLEET_STATE_DIR when given (a flag or the environment chose them, not
        /// fleet.toml); nil leaves fleet.toml in charge.
        public var chrootRoot: String?
        public var stateDirectory: String?
        /// The dedicated sshd's configuration (`fleet sshd-config > FILE`); nil: no fleet-sshd.service.
        public var sshdConfiguration: String?
        /// The host private key that configuration names (`--host-private-key` of `fleet sshd-config`).
        public var hostKey: String
        public var sshd: String
        public var sshKeygen: String
        /// Where `fleet review` writes the metrics.
        public var metricsFile: String
        /// A systemd time span; nil: no fleet-publish.timer.
        public var publishEvery: String?
        public var reviewEvery: String
        /// A systemd time span; nil: no fleet-update.service or timer.
        public var updateEvery: String?
        /// `all` or `per-host` (`fleet update --policy`).
        public var updatePolicy: String

        public init(
            binary: String, repository: String, chrootRoot: String? = nil, stateDirectory: String? = nil,
            sshdConfiguration: String? = ServerUnits.defaultSSHDConfiguration,
            hostKey: String = ServerUnits.defaultHostKey, sshd: String = "/usr/sbin/sshd",
            sshKeygen: String = "/usr/bin/ssh-keygen", metricsFile: String, publishEvery: String? = nil,
            reviewEvery: String = ServerUnits.defaultReviewEvery, updateEvery: String? = nil,
            updatePolicy: String = "all"
        ) {
            self.binary = binary
            self.repository = repository
            self.chrootRoot = chrootRoot
            self.stateDirectory = stateDirectory
            self.sshdConfiguration = sshdConfiguration
            self.hostKey = hostKey
            self.sshd = sshd
            self.sshKeygen = sshKeygen
            self.metricsFile = metricsFile
            self.publishEvery = publishEvery
            self.reviewEvery = reviewEvery
            self.updateEvery = updateEvery
            self.updatePolicy = updatePolicy
        }
    }

    public static let sshdServiceName = "fleet-sshd.service"
    public static let publishServiceName = "fleet-publish.service"
    public static let publishTimerName = "fleet-publish.timer"
    public static let reviewServiceName = "fleet-review.service"
    public static let reviewTimerName = "fleet-review.timer"
    public static let refreshServiceName = "fleet-refresh.service"
    public static let refreshTimerName = "fleet-refresh.timer"
    /// How often `fleet publish --refresh` runs: a quarter of the shortest TTL fleet.toml accepts (an hour).
    public static let refreshEvery = "15min"
    public static let updateServiceName = "fleet-update.service"
    public static let updateTimerName = "fleet-update.timer"
    /// `fleet update --policy`'s values.
    public static let updatePolicies = ["all", "per-host"]
    public static let defaultDirectory = "/etc/systemd/system"
    public static let defaultSSHDConfiguration = "/etc/fleet/sshd_config"
    public static let defaultHostKey = "/etc/ssh/ssh_host_ed25519_key"
    public static let defaultReviewEvery = "1min"
    /// Where systemd finds nix and git for `fleet publish`: the installer's default profile, then the usual
    /// directories (Debian's nix-bin is in /usr/bin).
    static let searchPath =
        "/nix/var/nix/profiles/default/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    public let options: Options

    /// Checks every value, reporting every problem at once, each naming its option.
    public init(_ options: Options) throws(SetupError) {
        var problems: [String] = []
        var paths: [(String, String)] = [
            ("--binary", options.binary), ("--repo", options.repository), ("--metrics-file", options.metricsFile),
        ]
        if let chrootRoot = options.chrootRoot { paths.append(("--chroot-root", chrootRoot)) }
        if let stateDirectory = options.stateDirectory { paths.append(("--state-dir", stateDirectory)) }
        if let sshdConfiguration = options.sshdConfiguration {
            paths += [
                ("--sshd-config", sshdConfiguration), ("--host-private-key", options.hostKey),
                ("--sshd", options.sshd), ("--ssh-keygen", options.sshKeygen),
            ]
        }
        for (option, path) in paths {
            if let problem = UnitFile.pathProblem(path) { problems.append("\(option) \(Self.shown(path)): \(problem)") }
        }
        for case let (option, span?) in [
            ("--publish-every", options.publishEvery), ("--review-every", options.reviewEvery),
            ("--update-every", options.updateEvery),
        ] {
            if let problem = Self.timeSpanProblem(span) { problems.append("\(option) \(Self.shown(span)): \(problem)") }
        }
        if !Self.updatePolicies.contains(options.updatePolicy) {
            problems.append(
                "--update-policy \(Self.shown(options.updatePolicy)): must be one of \(Self.updatePolicies.joined(separator: ", "))"
            )
        }
        if !problems.isEmpty { throw SetupError(problems.joined(separator: "\n")) }
        self.options = options
    }

    /// The unit files, services before the timers that start them.
    public var units: [Unit] {
        let header = "# Written by fleet install-units: run it again rather than editing this file."
        let fleet = options.binary
        let repo = "--repo \(options.repository)"
        var environment: [String] = []
        if let chrootRoot = options.chrootRoot { environment.append("Environment=FLEET_CHROOT_ROOT=\(chrootRoot)") }
        if let stateDirectory = options.stateDirectory {
            environment.append("Environment=FLEET_STATE_DIR=\(stateDirectory)")
        }
        var result: [Unit] = []
        func add(_ name: String, _ lines: [String]) {
            result.append(Unit(name: name, text: ([header] + lines).joined(separator: "\n") + "\n"))
        }
        if let configuration = options.sshdConfiguration {
            let key = options.hostKey
            let keyDirectory = key.lastIndex(of: "/").map { $0 == key.startIndex ? "/" : String(key[..<$0]) } ?? "/"
            add(
                Self.sshdServiceName,
                [
                    "[Unit]",
                    "Description=fleet: OpenSSH serving the hosts' chroots, SFTP only",
                    "After=network.target",
                    "",
                    "[Service]",
                    "# The host key the configuration names, made once when missing, as ssh-keygen -A does for the",
                    "# system sshd. The hosts pin its public key: put it into fleet.toml's [server] host_key.",
                    "ExecStartPre=/bin/sh -c 'test -e \(key) || { mkdir -p -m 0755 \(keyDirectory) && exec "
                        + "\(options.sshKeygen) -q -t ed25519 -N \"\" -C fleet-sshd -f \(key); }'",
                    "# Written by fleet sshd-config; a configuration sshd refuses stops the start here, named.",
                    "ExecStartPre=\(options.sshd) -t -f \(configuration)",
                    "ExecStart=\(options.sshd) -D -e -f \(configuration)",
                    "ExecReload=\(options.sshd) -t -f \(configuration)",
                    "ExecReload=/bin/kill -HUP $MAINPID",
                    "# sshd needs /run/sshd, which Debian's ssh.service also makes and removes when it stops.",
                    "RuntimeDirectory=sshd",
                    "RuntimeDirectoryPreserve=yes",
                    "Restart=on-failure",
                    "",
                    "[Install]",
                    "WantedBy=multi-user.target",
                ])
        }
        add(
            Self.publishServiceName,
            [
                "[Unit]",
                "Description=fleet: publish the changed hosts into their chroots",
                "Wants=network-online.target",
                "After=network-online.target",
                "",
                "[Service]",
                "Type=oneshot",
                "# A new host needs its user and chroot first; a refused host does not stop the others (the dash).",
                "ExecStartPre=-\(fleet) setup \(repo)",
                "ExecStart=\(fleet) publish \(repo)",
                "UMask=0022",
                "# Where nix and git are; flakes enabled whatever nix.conf says; git names the commit of a",
                "# repository another user owns.",
                "Environment=PATH=\(Self.searchPath)",
                "Environment=\"NIX_CONFIG=extra-experimental-features = nix-command flakes\"",
                "Environment=GIT_CONFIG_COUNT=1",
                "Environment=GIT_CONFIG_KEY_0=safe.directory",
                "Environment=GIT_CONFIG_VALUE_0=\(options.repository)",
            ] + environment)
        if let every = options.publishEvery {
            add(
                Self.publishTimerName,
                [
                    "[Unit]",
                    "Description=fleet: publish every \(every)",
                    "",
                    "[Timer]",
                    "# Publishing an unchanged repository writes nothing, so a short interval is cheap.",
                    "OnBootSec=2min",
                    "OnUnitActiveSec=\(every)",
                    "Unit=\(Self.publishServiceName)",
                    "",
                    "[Install]",
                    "WantedBy=timers.target",
                ])
        }
        add(
            Self.reviewServiceName,
            [
                "[Unit]",
                "Description=fleet: ingest the hosts' reports, tell the hooks, write the metrics",
                "",
                "[Service]",
                "Type=oneshot",
                "# Exits 0 whatever state the hosts are in; 1 (this unit failed) when state.db or the metrics",
                "# file cannot be used.",
                "ExecStart=\(fleet) review \(repo) --metrics-file \(options.metricsFile)",
                "UMask=0022",
            ] + environment)
        add(
            Self.reviewTimerName,
            [
                "[Unit]",
                "Description=fleet: review the hosts every \(options.reviewEvery)",
                "",
                "[Timer]",
                "OnBootSec=1min",
                "OnUnitActiveSec=\(options.reviewEvery)",
                "AccuracySec=1s",
                "Unit=\(Self.reviewServiceName)",
                "",
                "[Install]",
                "WantedBy=timers.target",
            ])
        add(
            Self.refreshServiceName,
            [
                "[Unit]",
                "Description=fleet: re-sign the manifests about to expire (freeze protection)",
                "",
                "[Service]",
                "Type=oneshot",
                "# Re-signs only what is due (same generation, new expiry): no build, no git. Exits 0 when a",
                "# publish holds the lock (it re-signs the same); 1 when a manifest could not be re-signed.",
                "ExecStart=\(fleet) publish \(repo) --refresh",
                "UMask=0022",
            ] + environment)
        add(
            Self.refreshTimerName,
            [
                "[Unit]",
                "Description=fleet: re-sign expiring manifests every \(Self.refreshEvery)",
                "",
                "[Timer]",
                "OnBootSec=3min",
                "OnUnitActiveSec=\(Self.refreshEvery)",
                "Unit=\(Self.refreshServiceName)",
                "",
                "[Install]",
                "WantedBy=timers.target",
            ])
        if let every = options.updateEvery {
            add(
                Self.updateServiceName,
                [
                    "[Unit]",
                    "Description=fleet: update the hosts' flake inputs, build them, publish what built",
                    "Wants=network-online.target",
                    "After=network-online.target",
                    "",
                    "[Service]",
                    "Type=oneshot",
                    "# Exits 1 (this unit failed) when a host did not build with the new inputs; the hooks hear",
                    "# update-failed. --commit: the next update needs a repository without uncommitted changes.",
                    "ExecStart=\(fleet) update \(repo) --commit --policy \(options.updatePolicy)",
                    "UMask=0022",
                    "Environment=PATH=\(Self.searchPath)",
                    "Environment=\"NIX_CONFIG=extra-experimental-features = nix-command flakes\"",
                    "Environment=GIT_CONFIG_COUNT=1",
                    "Environment=GIT_CONFIG_KEY_0=safe.directory",
                    "Environment=GIT_CONFIG_VALUE_0=\(options.repository)",
                ] + environment)
            add(
                Self.updateTimerName,
                [
                    "[Unit]",
                    "Description=fleet: update the flake inputs every \(every)",
                    "",
                    "[Timer]",
                    "OnBootSec=15min",
                    "OnUnitActiveSec=\(every)",
                    "RandomizedDelaySec=10min",
                    "Unit=\(Self.updateServiceName)",
                    "",
                    "[Install]",
                    "WantedBy=timers.target",
                ])
        }
        return result
    }

    /// The units to enable after installing: the sshd, and the timers.
    public var enabledUnits: [String] {
        (options.sshdConfiguration == nil ? [] : [Self.sshdServiceName])
            + (options.publishEvery == nil ? [] : [Self.publishTimerName]) + [
                Self.reviewTimerName, Self.refreshTimerName,
            ]
            + (options.updateEvery == nil ? [] : [Self.updateTimerName])
    }

    /// Writes the units into `directory` (``SystemdUnitFiles/UnitFile/install(_:into:option:)``).
    public func install(into directory: String) throws(UnitFileError) -> [Installed] {
        try UnitFile.install(units, into: directory, option: "--directory")
    }

    // MARK: Validation

    /// Why `span` is not a systemd time span of at least a second, or nil: a timer that fires more often would
    /// only load the server.
    static func timeSpanProblem(_ span: String) -> String? {
        guard let seconds = SystemdTimeSpan.seconds(of: span) else { return SystemdTimeSpan.rule }
        return seconds < 1 ? "must be at least a second (\(SystemdTimeSpan.rule))" : nil
    }

    /// A value as a message shows it: quoted, with newlines and other control characters escaped.
    static func shown(_ value: String) -> String { String(reflecting: value) }
}
