import FleetFiles

/// The systemd units of a fleet server without the NixOS module (`fleet install-units`, Debian):
///
/// - `fleet-sshd.service`: the dedicated sshd (`sshd -D -e -f <sshd_config>`), its configuration checked with
///   `sshd -t` first, and its host key made when missing (what Debian's `ssh-keygen -A` does for the system
///   sshd, here for the key the dedicated sshd's configuration names). Left out with `withSSHD == false`, for a
///   server whose system sshd serves the chroots (`fleet sshd-config --match-only`);
/// - `fleet-publish.service`: `fleet setup` then `fleet publish`; `fleet-publish.timer` only when a publish
///   interval is given (a publish timer when wanted; `systemctl start fleet-publish` works either way);
/// - `fleet-review.service` + `fleet-review.timer`: `fleet review --metrics-file …` every interval, so that host
///   events reach the hooks and the metrics file stays fresh without anyone running `fleet status`.
///
/// `nixos/server.nix` declares fleet-review the same way for NixOS servers.
///
/// Every value that goes into a unit file is checked first, naming its option: paths must be absolute and made
/// of characters that mean nothing to systemd or to the shell of the key's ExecStartPre (no whitespace, quotes,
/// `%`, `$`, `\` or control characters, so no newline can start a directive of its own), and intervals must be
/// plain systemd time spans.
///
/// The install logic and the path rule are copied from HostAgent's `SystemdUnits` (the host side), which the
/// server cannot depend on.
public struct ServerUnits: Sendable, Equatable {
    /// One unit file: its name and its full text.
    public struct Unit: Sendable, Equatable {
        public let name: String
        public let text: String
    }

    /// What installing did to one unit file.
    public struct Installed: Sendable, Equatable {
        public enum Status: String, Sendable {
            case written
            case unchanged
        }

        public let path: String
        public let status: Status
    }

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

        public init(
            binary: String, repository: String, chrootRoot: String? = nil, stateDirectory: String? = nil,
            sshdConfiguration: String? = ServerUnits.defaultSSHDConfiguration,
            hostKey: String = ServerUnits.defaultHostKey, sshd: String = "/usr/sbin/sshd",
            sshKeygen: String = "/usr/bin/ssh-keygen", metricsFile: String, publishEvery: String? = nil,
            reviewEvery: String = ServerUnits.defaultReviewEvery
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
        }
    }

    public static let sshdServiceName = "fleet-sshd.service"
    public static let publishServiceName = "fleet-publish.service"
    public static let publishTimerName = "fleet-publish.timer"
    public static let reviewServiceName = "fleet-review.service"
    public static let reviewTimerName = "fleet-review.timer"
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
            if let problem = Self.unitPathProblem(path) { problems.append("\(option) \(Self.shown(path)): \(problem)") }
        }
        for case let (option, span?) in [
            ("--publish-every", options.publishEvery), ("--review-every", options.reviewEvery),
        ] {
            if let problem = Self.timeSpanProblem(span) { problems.append("\(option) \(Self.shown(span)): \(problem)") }
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
        return result
    }

    /// The units to enable after installing: the sshd, and the timers.
    public var enabledUnits: [String] {
        (options.sshdConfiguration == nil ? [] : [Self.sshdServiceName])
            + (options.publishEvery == nil ? [] : [Self.publishTimerName]) + [Self.reviewTimerName]
    }

    /// Writes the units into `directory`, each atomically (0644), leaving files that already say the same
    /// untouched. Nothing is written when any target is not a regular file (a link, such as a unit masked
    /// with `systemctl mask`, is left alone and named).
    public func install(into directory: String) throws -> [Installed] {
        guard directory.hasPrefix("/"), !directory.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw SetupError("--directory \(Self.shown(directory)): must be an absolute path")
        }
        guard let status = try FileStatus.following(directory), status.kind == .directory else {
            throw SetupError("--directory \(directory): no such directory")
        }
        let base = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        var plans: [(path: String, bytes: [UInt8], current: Bool)] = []
        for unit in units {
            let path = (base == "/" ? "" : base) + "/" + unit.name
            let bytes = Array(unit.text.utf8)
            var current = false
            if let existing = try FileStatus.of(path) {
                guard existing.kind == .regular else {
                    let what =
                        existing.kind == .symbolicLink ? "a symbolic link (a masked unit?)" : "not a regular file"
                    throw SetupError(
                        "\(path) is \(what); nothing was written. Remove it (`systemctl unmask` for a masked unit) and "
                            + "run install-units again.")
                }
                let text = try FileIO.readNoFollow(path, limit: 1 << 20)
                current = existing.permissions == 0o644 && text == bytes
            }
            plans.append((path, bytes, current))
        }
        var installed: [Installed] = []
        for plan in plans {
            if !plan.current { try FileIO.writeAtomically(plan.bytes, to: plan.path, mode: 0o644) }
            installed.append(Installed(path: plan.path, status: plan.current ? .unchanged : .written))
        }
        return installed
    }

    // MARK: Validation

    /// Characters a path in a unit file may have: none of them means anything to systemd's parser, nor to the
    /// shell that runs the host key's ExecStartPre.
    static func isUnitPathCharacter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
            || "/._-+@:,=~".unicodeScalars.contains(scalar)
    }

    /// Why `path` cannot go into a unit file as it is, or nil.
    static func unitPathProblem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "must be an absolute path" }
        guard path.utf8.count < 4096, path != "/", !path.hasSuffix("/") else { return "must name a file" }
        guard path.unicodeScalars.allSatisfy(isUnitPathCharacter) else {
            return "may only contain letters, digits and / . _ - + @ : , = ~ (it goes into a unit file as it is)"
        }
        return nil
    }

    static let timeUnits = [
        "usec", "msec", "seconds", "second", "sec", "s", "minutes", "minute", "min", "hours",
        "hour", "hr", "h", "days", "day", "d", "weeks", "week", "w",
    ]

    /// Why `span` is not a plain systemd time span (`30s`, `1min`, `1h 30min`), or nil. At least a second:
    /// a timer that fires more often would only load the server.
    static func timeSpanProblem(_ span: String) -> String? {
        let rule = "not a time span; use numbers with units, e.g. 30s, 1min, 10min, 1h 30min (s, min, h, d, w)"
        let parts = span.split(separator: " ")
        guard !parts.isEmpty, span.utf8.count <= 64 else { return rule }
        var anyNonZero = false
        for part in parts {
            let digits = part.prefix { ("0"..."9").contains($0) }
            let unit = part.dropFirst(digits.count)
            guard !digits.isEmpty, timeUnits.contains(String(unit)), let value = Int(digits) else { return rule }
            if value > 0 { anyNonZero = true }
            if unit == "usec" || unit == "msec" { return "must be at least a second (\(rule))" }
        }
        return anyNonZero ? nil : "must be more than 0 (\(rule))"
    }

    /// A value as a message shows it: quoted, with newlines and other control characters escaped.
    static func shown(_ value: String) -> String { String(reflecting: value) }
}
