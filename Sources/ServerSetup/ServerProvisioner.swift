import CommandRunner
public import FleetFiles
import FleetProtocol
public import Inventory
import ServerStore

/// `fleet setup`: the Unix users, authorized keys and chroot directories every host needs, made
/// idempotently (a second run changes nothing).
public struct ServerProvisioner {
    public struct HostOutcome: Codable, Sendable {
        public var host: String
        public var user: String
        /// `created`, `updated`, `unchanged` or `refused`.
        public var status: String
        public var actions: [String]
        public var problem: String?
        /// The host's disk quota on the chroots' filesystem and what it uses; nil where quotas are off.
        public var quota: UserQuota?
    }

    public struct Report: Codable, Sendable {
        public var hosts: [HostOutcome]
        public var warnings: [String]
        /// Whether the chroots' filesystem enforces the hosts' disk quotas (see ``QuotaProvisioner``).
        public var quotasEnforced = false
        public var succeeded: Bool { hosts.allSatisfy { $0.status != "refused" } }
    }

    let configuration: FleetConfiguration

    public init(configuration: FleetConfiguration) {
        self.configuration = configuration
    }

    /// The comment fleet puts on the users it creates; a user without it is never adopted or touched.
    static func comment(for host: HostConfiguration) -> String { "fleet host \(host.name)" }

    public func run() async throws -> Report {
        let server = configuration.server
        try PathSafety.check(server.chrootRoot)
        try FileIO.createDirectories(server.chrootRoot)
        try PathSafety.check(server.chrootRoot)
        let pool = ChrootLayout.cachePool(root: server.chrootRoot)
        try FileIO.ensureDirectory(pool, mode: ChrootLayout.cachePoolMode, owner: 0, group: 0)
        let keysDirectory = SSHDConfiguration.authorizedKeysDirectory(stateDirectory: server.stateDirectory)
        try PathSafety.check(keysDirectory)
        try FileIO.createDirectories(server.stateDirectory)
        try FileIO.ensureDirectory(keysDirectory, mode: 0o755, owner: 0, group: 0)
        let linksDirectory = SSHDConfiguration.chrootLinksDirectory(stateDirectory: server.stateDirectory)
        try FileIO.ensureDirectory(linksDirectory, mode: 0o755, owner: 0, group: 0)
        try PathSafety.check(linksDirectory)

        var outcomes: [HostOutcome] = []
        for host in configuration.hosts {
            var outcome = await provision(host, keysDirectory: keysDirectory)
            if outcome.status != "refused" { linkChroot(of: host, in: linksDirectory, outcome: &outcome) }
            outcomes.append(outcome)
        }
        var warnings: [String] = []
        let wanted = Set(configuration.hosts.map(\.unixUser))
        for name in try FileIO.listDirectory(keysDirectory).sorted() where !wanted.contains(name) {
            try FileIO.removeTree(keysDirectory + "/" + name)
            warnings.append(
                "removed the authorized key of \(name), which is no longer in the inventory (its Unix user and chroot data are kept: `userdel \(name)` when it is gone for good)"
            )
        }
        for name in try FileIO.listDirectory(linksDirectory).sorted() where !wanted.contains(name) {
            try FileIO.removeTree(linksDirectory + "/" + name)
        }
        if let warning = try auditLoggingWarning(outcomes) { warnings.append(warning) }
        warnings += try checkOneFilesystem(pool: pool, outcomes: &outcomes)
        let quotas = await QuotaProvisioner(configuration: configuration).run(outcomes: &outcomes)
        return Report(hosts: outcomes, warnings: warnings + quotas.warnings, quotasEnforced: quotas.enforced)
    }

    /// Names the set-up hosts whose chroot has no syslog socket at `dev/log`, so their SFTP requests go
    /// unlogged. One warning for all of them: a thousand hosts without rsyslog are one problem, not a thousand.
    func auditLoggingWarning(_ outcomes: [HostOutcome]) throws -> String? {
        let provisioned = Set(outcomes.filter { $0.status != "refused" }.map(\.host))
        var missing: [ChrootLayout] = []
        for host in configuration.hosts where provisioned.contains(host.name.value) {
            let layout = ChrootLayout(root: configuration.server.chrootRoot, host: host.name)
            if try FileStatus.of(layout.logSocket)?.isSocket != true { missing.append(layout) }
        }
        guard let first = missing.first else { return nil }
        let names =
            missing.prefix(5).map(\.host.value).joined(separator: ", ")
            + (missing.count > 5 ? " and \(missing.count - 5) more" : "")
        return "SFTP audit logging is off for \(names): no syslog socket at \(first.logSocket)"
            + (missing.count > 1 ? " (nor in the others' dev/)" : "")
            + ", so what each host reads and writes is not logged; `fleet syslog-config > "
            + "\(SyslogConfiguration.suggestedPath)` and restart rsyslog"
    }

    /// Hosts' caches are hard links into the pool, and links cannot cross filesystems: a chroot on another
    /// filesystem than the pool (a mount at `<chroot_root>/<host>`) could get no cache. Such a host with
    /// `cache = true` is refused (its publish would fail); for the others it is a warning, for the day they
    /// turn the cache on.
    func checkOneFilesystem(pool: String, outcomes: inout [HostOutcome]) throws -> [String] {
        guard let poolDevice = try FileStatus.of(pool)?.device else { return [] }
        var warnings: [String] = []
        for (index, host) in configuration.hosts.enumerated() where outcomes[index].status != "refused" {
            let layout = ChrootLayout(root: configuration.server.chrootRoot, host: host.name)
            // The chroot, or its cache/ alone, may be a mount of its own.
            var elsewhere: String?
            for directory in [layout.directory, layout.cache] where elsewhere == nil {
                if let device = try FileStatus.of(directory)?.device, device != poolDevice { elsewhere = directory }
            }
            guard let elsewhere else { continue }
            let problem =
                "\(elsewhere) is on another filesystem than the binary-cache pool \(pool), so the host's cache/ "
                + "cannot hold hard links to the pool's files: put \(elsewhere) on the filesystem of "
                + "\(configuration.server.chrootRoot) (do not mount a filesystem there; mount it at the chroot root "
                + "instead)"
            if host.cache {
                outcomes[index].status = "refused"
                outcomes[index].problem = problem + "; until then this host, with cache = true, cannot be published"
            } else {
                warnings.append(problem + " before setting cache = true for \(host.name)")
            }
        }
        return warnings
    }

    /// `<state_dir>/chroots/<user>` → the host's chroot: what the sshd configuration's one Match block chroots
    /// the user into (`ChrootDirectory …/%u`). sshd checks every component of that path and follows the link.
    func linkChroot(of host: HostConfiguration, in linksDirectory: String, outcome: inout HostOutcome) {
        let link = linksDirectory + "/" + host.unixUser
        let target = ChrootLayout(root: configuration.server.chrootRoot, host: host.name).directory
        do {
            guard (try? FileIO.readLink(link)) != target else { return }
            try FileIO.replaceSymlink(link, pointingTo: target)
            outcome.actions.append("linked \(link) to \(target)")
            if outcome.status == "unchanged" { outcome.status = "updated" }
        } catch {
            outcome.status = "refused"
            outcome.problem = "cannot link \(link) to \(target): \(error)"
        }
    }

    func provision(_ host: HostConfiguration, keysDirectory: String) async -> HostOutcome {
        var outcome = HostOutcome(
            host: host.name.value, user: host.unixUser, status: "unchanged", actions: [], problem: nil)
        do {
            guard let key = host.publicKey else {
                throw SetupError(
                    "host \(host.name) has no SSH key in \(configuration.file): set key = \"<the host's /etc/ssh/ssh_host_ed25519_key.pub>\" in [hosts.\(host.name)]"
                )
            }
            let user = try await ensureUser(host, outcome: &outcome)
            let keyFile = keysDirectory + "/" + host.unixUser
            // Checked again here: exactly one key line, whatever the inventory let through.
            let line = Array(try key.authorizedKeysLine(options: "restrict").utf8)
            if (try? FileIO.readNoFollow(keyFile, limit: 64 << 10)) != line {
                try FileIO.writeAtomically(line, to: keyFile, mode: 0o644, owner: 0, group: 0)
                outcome.actions.append("wrote \(keyFile)")
            }
            let layout = ChrootLayout(root: configuration.server.chrootRoot, host: host.name)
            let before = try directoryStates(layout)
            try ChrootProvisioner.ensure(layout, user: user, repair: true)
            try FileIO.ensureDirectory(layout.dev, mode: 0o755, owner: 0, group: 0)
            if try directoryStates(layout) != before { outcome.actions.append("set up \(layout.directory)") }
            if outcome.status == "unchanged" && !outcome.actions.isEmpty { outcome.status = "updated" }
        } catch {
            outcome.status = "refused"
            outcome.problem = "\(error)"
        }
        return outcome
    }

    /// Where host users' IDs come from: useradd's system allocation (top down, no subordinate IDs, no aging)
    /// moved to 10000–59999. Debian's own system range, 100–999, holds fewer than 900 accounts: a fleet of a
    /// thousand hosts would exhaust it ("Can't get unique GID") and leave none for packages that add a user.
    static let hostIDRange = [
        "-K", "SYS_UID_MIN=\(hostIDs.lowerBound)", "-K", "SYS_UID_MAX=\(hostIDs.upperBound)",
        "-K", "SYS_GID_MIN=\(hostIDs.lowerBound)", "-K", "SYS_GID_MAX=\(hostIDs.upperBound)",
    ]
    public static let hostIDs = 10000...59999

    func ensureUser(_ host: HostConfiguration, outcome: inout HostOutcome) async throws -> Accounts.User {
        if let existing = Accounts.user(named: host.unixUser) {
            guard existing.comment == Self.comment(for: host) else {
                throw SetupError(
                    "a Unix user \(host.unixUser) already exists and was not made by fleet (its comment is \(quoted(existing.comment)), expected \(quoted(Self.comment(for: host)))); rename the host or remove that user"
                )
            }
        } else {
            try await Command.checked(
                "useradd",
                [
                    "--system", "--no-create-home", "--home-dir", "/", "--shell", "/usr/sbin/nologin", "--user-group",
                ] + Self.hostIDRange + ["--comment", Self.comment(for: host), host.unixUser])
            outcome.status = "created"
            outcome.actions.append("created user \(host.unixUser)")
        }
        // useradd locks the password with "!", which sshd refuses when UsePAM is off; "*" allows key logins only.
        if try shadowPassword(of: host.unixUser) != "*" {
            try await Command.checked("usermod", ["-p", "*", host.unixUser])
            outcome.actions.append("set password field of \(host.unixUser) to *")
        }
        guard let user = Accounts.user(named: host.unixUser) else {
            throw SetupError("user \(host.unixUser) was created but cannot be looked up")
        }
        return user
    }

    /// The password field of `user` in /etc/shadow (Glibc's shadow.h is not imported into Swift).
    func shadowPassword(of user: String) throws -> String? {
        let text = String(decoding: try FileIO.read("/etc/shadow", limit: 64 << 20), as: UTF8.self)
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            if fields.count >= 2 && fields[0] == user { return String(fields[1]) }
        }
        return nil
    }

    func directoryStates(_ layout: ChrootLayout) throws -> [FileStatus?] {
        try [layout.directory, layout.snapshots, layout.cache, layout.logs, layout.dev].map {
            path throws(FileSystemError) in
            try FileStatus.of(path)
        }
    }
}
