public import ClientStateStore
import FleetFiles
public import FleetProtocol
public import SystemdUnitFiles

/// The systemd units that run fleet-client on a host without the NixOS module (`fleet-client install-units`):
///
/// - `fleet-client.service`: one `fleet-client run` (oneshot);
/// - `fleet-client.timer`: starts it 2 minutes after boot, then every interval, each plus a random delay;
/// - `fleet-client-page.socket`: 127.0.0.1:9999, loopback only;
/// - `fleet-client-page.service`: `fleet-client serve`, which receives that listening socket (Accept=no). It runs
///   as a dynamic unprivileged user in a tight sandbox: a press only asks systemd to start `fleet-client.service`,
///   which a polkit rule (`50-fleet-client-page.rules`, ``pageRule``) allows that user and nothing else.
///
/// `nixos/client.nix` declares the same units for NixOS hosts; the facts both use are in `nixos/shared.nix`,
/// which the tests compare with the constants here.
///
/// The timer's interval is client.toml's `poll_interval_seconds` (the units take it from there, as the NixOS
/// module does), so the interval the host reports to the server is the one it polls at.
///
/// Every value that goes into a unit file is checked first: paths must be absolute and made of characters
/// that mean nothing to systemd (no whitespace, quotes, `%`, `$`, `\` or control characters, so no newline
/// can start a directive of its own), and time spans must be systemd time spans.
public struct SystemdUnits: Sendable, Equatable {
    public typealias Unit = UnitFile
    public typealias Installed = UnitFile.Installed

    public static let serviceName = "fleet-client.service"
    public static let timerName = "fleet-client.timer"
    public static let pageSocketName = "fleet-client-page.socket"
    public static let pageServiceName = "fleet-client-page.service"
    public static let pageListenStream = "127.0.0.1:9999"
    public static let defaultDirectory = "/etc/systemd/system"
    /// The page's user (DynamicUser=): the one the polkit rule lets start the run's unit.
    public static let pageUser = "fleet-client-page"
    public static let pageRuleName = "50-fleet-client-page.rules"
    public static let defaultPolkitDirectory = "/etc/polkit-1/rules.d"
    /// Where a sysadmin puts the run's proxy variables (`https_proxy=…`), as Debian keeps a service's settings.
    public static let environmentFile = "/etc/default/fleet-client"
    public static let defaultRandomizedDelay = "5min"
    /// The first poll after boot. Persistent= only applies to OnCalendar= timers; this is what catches up
    /// after the machine was off.
    public static let bootDelay = "2min"

    /// Outcomes of `fleet-client run` that are not failures of `fleet-client.service`: applied, unreachable
    /// (nothing changed here; the next poll tries again) and locked (another run, e.g. the page's, holds the
    /// lock and reports). Unchanged exits 0. Failed, refused, rolled back, stale and local failure (a full disk, an
    /// unwritable state directory: such a host would otherwise never update, silently) mark the unit failed:
    /// each needs a look, and `systemctl --failed` or an `OnFailure=` unit is where a host's admin sees it.
    public static let successOutcomes: [RunOutcome] = [.applied, .unreachable, .locked]
    public static var successExitStatuses: [Int32] { successOutcomes.map(\.exitStatus) }

    /// Where systemd finds nix on a host without NixOS: the installer's default profile, then the usual
    /// directories (Debian's nix-bin is in /usr/bin).
    static let searchPath =
        "/nix/var/nix/profiles/default/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    public let binary: String
    public let configuration: String
    /// The poll interval as a systemd time span (OnUnitActiveSec=), from client.toml's seconds.
    public let interval: String
    public let randomizedDelay: String
    /// TimeoutStartSec= of the run's unit, in seconds: longer than the longest run client.toml allows (its
    /// build and activation timeouts, the confirmation window), so systemd never kills a run that would end.
    public let runTimeoutSeconds: Int

    /// Checks every value, reporting every problem at once.
    ///
    /// - Parameters:
    ///   - binary: the fleet-client executable the units start (absolute).
    ///   - configuration: the client.toml the units pass with `--config` (absolute).
    ///   - intervalSeconds: client.toml's `poll_interval_seconds` (OnUnitActiveSec=).
    ///   - randomizedDelay: a systemd time span (RandomizedDelaySec=).
    ///   - runTimeoutSeconds: client.toml's longest run (``ClientConfiguration/longestRunSeconds``).
    public init(
        binary: String, configuration: String,
        intervalSeconds: Int = ClientConfiguration.defaultPollIntervalSeconds,
        randomizedDelay: String = defaultRandomizedDelay,
        runTimeoutSeconds: Int = ClientConfiguration.Timeouts().buildSeconds
            + ClientConfiguration.Timeouts().activationSeconds + ClientConfiguration.Rollback().confirmTimeoutSeconds
            + 600
    ) throws(ClientError) {
        var problems: [String] = []
        for (option, path) in [("--binary", binary), ("--config", configuration)] {
            if let problem = UnitFile.pathProblem(path) { problems.append("\(option) \(Self.shown(path)): \(problem)") }
        }
        let trimmedDelay = randomizedDelay.trimmingSpaces
        let range = ClientConfiguration.pollIntervalRange
        if !range.contains(intervalSeconds) {
            problems.append(
                "poll_interval_seconds \(intervalSeconds) in \(configuration): must be \(range.lowerBound)…"
                    + "\(range.upperBound) (at least a minute: polling more often loads the server)")
        }
        if SystemdTimeSpan.seconds(of: trimmedDelay) == nil {
            problems.append("--randomized-delay \(Self.shown(randomizedDelay)): \(SystemdTimeSpan.rule)")
        }
        if !problems.isEmpty { throw ClientError(problems.joined(separator: "\n")) }
        self.binary = binary
        self.configuration = configuration
        self.interval = Self.timeSpan(seconds: intervalSeconds)
        self.randomizedDelay = trimmedDelay
        self.runTimeoutSeconds = runTimeoutSeconds
    }

    /// The four unit files, services before the timer and socket that start them.
    public var units: [Unit] {
        let header = "# Written by `fleet-client install-units`: run it again rather than editing this file."
        let environment = [
            "# Where nix is (the installer's default profile, or /usr/bin), and flakes enabled whatever nix.conf says.",
            "Environment=PATH=\(Self.searchPath)",
            "Environment=\"NIX_CONFIG=extra-experimental-features = nix-command flakes\"",
        ]
        let service =
            [
                header,
                "[Unit]",
                "Description=fleet: pull and apply this host's configuration",
                "Wants=network-online.target",
                "After=network-online.target",
                "",
                "[Service]",
                "Type=oneshot",
                "ExecStart=\(binary) run --config \(configuration)",
                "# Exit statuses: 0 unchanged, 10 applied, 13 unreachable (the next poll tries again) and 14 locked",
                "# (another run holds the lock) are successes; 11 failed, 12 refused, 15 rolled back, 16 local",
                "# failure (no space, state directory not writable), 17 stale (an expired manifest) and 1 mark",
                "# this unit failed.",
                "SuccessExitStatus=\(Self.successExitStatuses.map(String.init).joined(separator: " "))",
                "# Longer than client.toml's [timeouts] and confirmation window together: the run ends first.",
                "TimeoutStartSec=\(runTimeoutSeconds)",
                "# Proxy variables for git and nix (https_proxy=…, no_proxy=…), if this host needs them.",
                "EnvironmentFile=-\(Self.environmentFile)",
            ] + environment
        let timer = [
            header,
            "[Unit]",
            "Description=fleet: poll the fleet server every \(interval)",
            "",
            "[Timer]",
            "# \(Self.bootDelay) after boot (which catches up after the machine was off: Persistent= only applies",
            "# to OnCalendar= timers), then \(interval) after each run started, each plus a random delay of up to",
            "# \(randomizedDelay).",
            "OnBootSec=\(Self.bootDelay)",
            "OnUnitActiveSec=\(interval)",
            "RandomizedDelaySec=\(randomizedDelay)",
            "Unit=\(Self.serviceName)",
            "",
            "[Install]",
            "WantedBy=timers.target",
        ]
        let socket = [
            header,
            "[Unit]",
            "Description=fleet: the UPDATE MY MACHINE page (loopback only)",
            "",
            "[Socket]",
            "ListenStream=\(Self.pageListenStream)",
            "# One fleet-client serve receives the listening socket and accepts the connections itself.",
            "Accept=no",
            "Service=\(Self.pageServiceName)",
            "",
            "[Install]",
            "WantedBy=sockets.target",
        ]
        let page =
            [
                header,
                "[Unit]",
                "Description=fleet: the UPDATE MY MACHINE page on http://\(Self.pageListenStream)",
                "Requires=\(Self.pageSocketName)",
                "After=\(Self.pageSocketName)",
                "",
                "[Service]",
                "# A press runs `systemctl start --no-block \(Self.serviceName)` (allowed by polkit's",
                "# \(Self.pageRuleName)) and the page reads the run's progress.json and state.json: it runs",
                "# no activation, needs no privilege, and stopping it never touches a run.",
                "ExecStart=\(binary) serve --config \(configuration)",
                "Environment=PATH=\(Self.searchPath)",
            ] + Self.pageSandbox
        return [
            Unit(name: Self.serviceName, text: service.joined(separator: "\n") + "\n"),
            Unit(name: Self.pageServiceName, text: page.joined(separator: "\n") + "\n"),
            Unit(name: Self.timerName, text: timer.joined(separator: "\n") + "\n"),
            Unit(name: Self.pageSocketName, text: socket.joined(separator: "\n") + "\n"),
        ]
    }

    /// The page's sandbox: `systemd-analyze security` rates it 0.4 (SAFE). It reads, starts one unit through
    /// D-Bus (a path-based Unix socket, which crosses the private network namespace) and accepts on the
    /// socket systemd passes it (created outside the sandbox, so neither PrivateNetwork= nor the address
    /// family and IP rules apply to it). `pageHardening` in nixos/shared.nix sets the same directives (a test
    /// compares them).
    public static let pageSandbox = [
        "DynamicUser=yes",
        "User=\(pageUser)",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "PrivateDevices=yes",
        "PrivateTmp=yes",
        "PrivateUsers=yes",
        "PrivateNetwork=yes",
        "PrivateIPC=yes",
        "PrivateMounts=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "ProcSubset=pid",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "RemoveIPC=yes",
        "KeyringMode=private",
        "UMask=0077",
        "DevicePolicy=closed",
        "RestrictAddressFamilies=AF_UNIX",
        "IPAddressAllow=localhost",
        "IPAddressDeny=any",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallArchitectures=native",
    ]

    /// The polkit rule that lets the page's user start `fleet-client.service`, and nothing else.
    public var pageRule: Unit {
        let text = """
            // Written by `fleet-client install-units`: run it again rather than editing this file.
            // The page (\(Self.pageServiceName), user \(Self.pageUser)) may start \(Self.serviceName) and
            // nothing else: not stop it, not start any other unit.
            polkit.addRule(function (action, subject) {
                if (action.id == "org.freedesktop.systemd1.manage-units" &&
                    action.lookup("unit") == "\(Self.serviceName)" &&
                    action.lookup("verb") == "start" &&
                    subject.user == "\(Self.pageUser)") {
                    return polkit.Result.YES;
                }
            });

            """
        return Unit(name: Self.pageRuleName, text: text)
    }

    /// Writes the units into `directory`, each atomically (0644), leaving files that already say the same
    /// untouched. Nothing is written when any target is not a regular file (a link, such as a unit masked
    /// with `systemctl mask`, is left alone and named).
    public func install(into directory: String) throws(UnitFileError) -> [Installed] {
        try UnitFile.install(units, into: directory, option: "--directory")
    }

    /// Writes ``pageRule`` into polkit's rules directory, as ``install(into:)`` writes the units.
    public func installPageRule(into directory: String) throws(UnitFileError) -> [Installed] {
        try UnitFile.install([pageRule], into: directory, option: "--polkit-directory")
    }

    /// Whole seconds as the shortest systemd time span that says them exactly (``SystemdTimeSpan/shortest(seconds:)``).
    public static func timeSpan(seconds: Int) -> String { SystemdTimeSpan.shortest(seconds: seconds) }

    // MARK: Validation

    /// A value as a message shows it: quoted, with newlines and other control characters escaped.
    static func shown(_ value: String) -> String { String(reflecting: value) }

    /// The length of a systemd time span in seconds, or nil (``SystemdTimeSpan/seconds(of:)``).
    public static func seconds(ofTimeSpan text: String) -> Double? { SystemdTimeSpan.seconds(of: text) }
}

extension String {
    fileprivate var trimmingSpaces: String {
        var scalars = Substring(self).unicodeScalars
        while scalars.first == " " { scalars.removeFirst() }
        while scalars.last == " " { scalars.removeLast() }
        return String(scalars)
    }
}
