import FleetFiles
public import FleetProtocol
import Foundation
import NixKit
import TOMLKit

/// The fleet inventory, read from `fleet.toml` at the root of the fleet repository.
///
/// Validation is strict and complete: every unknown key, bad name and malformed key is reported at once,
/// each naming the file, the table and the key, so one edit fixes them all.
public struct FleetConfiguration: Sendable {
    /// `[server]`: where the chroots and state live, and what clients connect to.
    public struct Server: Sendable, Equatable {
        /// The address hosts connect to.
        public var address: String
        public var port: Int
        /// The server's SSH host key, pinned in every client.toml (no trust on first use).
        public var hostKey: SSHPublicKey?
        public var chrootRoot: String
        public var stateDirectory: String
        /// How long a superseded snapshot stays downloadable for clients that read the previous manifest.
        public var snapshotGraceSeconds: Int
        /// Prefix of the per-host Unix users.
        public var userPrefix: String
        /// Reports (with their logs) kept per host in state.db; older ones are dropped at ingest.
        public var reportHistory: Int = 100
        /// How long a manifest is valid after it is signed (freeze protection): `fleet publish` (and `--refresh`)
        /// re-signs a manifest with less than half of it left; a client refuses one past its expiry.
        public var manifestTTLSeconds: Int = FleetConfiguration.defaultManifestTTLSeconds
        /// Ingested report and log files left per host in its chroot's `logs/` (each kind); `fleet status` deletes
        /// older ones it has ingested, so a host cannot fill the server's disk with old reports.
        public var logsKeep: Int = 20
        /// Whether every publish that changed something (or re-signed a manifest) pushes to `[[mirrors]]` after.
        public var pushMirrors = false
        /// Each host's disk quota on the chroots' filesystem (`quota_mib`, `quota_inodes`; see ``HostQuota``).
        public var quotas = QuotaConfiguration()
    }

    public let server: Server
    /// Hosts sorted by name.
    public let hosts: [HostConfiguration]
    /// `[[hooks]]`: commands told about events (see ``HookConfiguration``).
    public let hooks: [HookConfiguration]
    /// `[roles.<name>]`: what roles include (each host's ``HostConfiguration/roles`` is already expanded).
    public var roles = RoleCatalog()
    /// The repository root (absolute).
    public let repository: String
    /// The fleet.toml path, for messages.
    public let file: String
    /// `[[rollout.rings]]`: the order in which a new generation reaches the hosts (see ``RolloutConfiguration``).
    public internal(set) var rollout = RolloutConfiguration()
    /// `[[mirrors]]`: servers that serve copies of the chroots (see ``MirrorConfiguration``), in file order.
    public internal(set) var mirrors: [MirrorConfiguration] = []

    public func mirror(named name: String) -> MirrorConfiguration? { mirrors.first { $0.name == name } }

    public static let fileName = "fleet.toml"

    public func host(named name: String) -> HostConfiguration? { hosts.first { $0.name.value == name } }

    static let serverKeys =
        [
            "address", "port", "host_key", "chroot_root", "state_dir", "snapshot_grace_seconds", "user_prefix",
            "report_history", "logs_keep", "manifest_ttl_seconds", "push_mirrors",
        ] + QuotaConfiguration.keys
    /// A week: a server whose refresh timer stopped leaves its hosts a few days to be noticed.
    public static let defaultManifestTTLSeconds = 7 * 86400
    /// At least an hour (clocks drift, refreshes run at most every quarter of it), at most a year (an expiry
    /// further away protects from nothing).
    public static let manifestTTLRange = 3600...(365 * 86400)
    static let hostKeys =
        [
            "key", "key_file", "attribute", "operation", "build", "cache", "poll_interval_seconds",
            "silent_after_intervals", "roles",
        ] + QuotaConfiguration.keys
    static let defaultKeys = [
        "operation", "build", "cache", "poll_interval_seconds", "silent_after_intervals", "roles",
    ]
    static let topKeys = ["server", "defaults", "hosts", "hooks", "roles", "rollout", "mirrors"]
    static let hookKeys = ["command", "events", "timeout_seconds"]
    /// How often hosts poll, at most a week; `fleet status` calls a host silent after `silent_after_intervals` of them.
    static let pollIntervalRange = 1...(7 * 86400)
    static let silentAfterRange = 1...1000

    /// Reads and validates `<repository>/fleet.toml`.
    ///
    /// - Throws: `InventoryError` listing every problem found.
    public static func load(repository: String) throws(InventoryError) -> FleetConfiguration {
        let root = FileIO.absolute(repository)
        let file = root + "/" + fileName
        guard let data = FileManager.default.contents(atPath: file) else {
            throw InventoryError(
                "\(file): cannot read the inventory (is \(root) a fleet repository? `fleet init` creates one)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw InventoryError("\(file): not UTF-8 text") }
        return try parse(text, file: file, repository: root)
    }

    /// Validates fleet.toml text. `repository` is used to check host directories and key files.
    public static func parse(_ text: String, file: String, repository: String) throws(InventoryError)
        -> FleetConfiguration
    {
        let table: TOMLTable
        switch TOMLReader.parse(text, file: file) {
        case .success(let parsed): table = parsed
        case .failure(let error): throw InventoryError(error.description)
        }
        var reader = TOMLReader(file: file)
        reader.checkKeys(table, allowed: topKeys, in: "the top level")

        let serverTable = reader.table(table, "server", in: "the top level") ?? TOMLTable()
        reader.checkKeys(serverTable, allowed: serverKeys, in: "[server]")
        var server = Server(
            address: reader.string(serverTable, "address", in: "[server]") ?? "localhost",
            port: reader.integer(serverTable, "port", in: "[server]", range: 1...65535) ?? 22,
            hostKey: nil,
            chrootRoot: reader.absolutePath(serverTable, "chroot_root", in: "[server]") ?? "/srv/fleet",
            stateDirectory: reader.absolutePath(serverTable, "state_dir", in: "[server]") ?? "/var/lib/fleet",
            snapshotGraceSeconds: reader.integer(
                serverTable, "snapshot_grace_seconds", in: "[server]", range: 0...(365 * 86400)) ?? 3600,
            userPrefix: reader.string(serverTable, "user_prefix", in: "[server]") ?? "fleet-")
        if let why = ServerAddress.problem(server.address) { reader.problem("[server] key \"address\": \(why)") }
        for (key, path) in [("chroot_root", server.chrootRoot), ("state_dir", server.stateDirectory)] {
            if let problem = Server.problem(withPath: path) { reader.problem("[server] key \"\(key)\": \(problem)") }
        }
        server.reportHistory = reader.integer(serverTable, "report_history", in: "[server]", range: 1...100_000) ?? 100
        server.logsKeep = reader.integer(serverTable, "logs_keep", in: "[server]", range: 1...100_000) ?? 20
        server.manifestTTLSeconds =
            reader.integer(serverTable, "manifest_ttl_seconds", in: "[server]", range: manifestTTLRange)
            ?? defaultManifestTTLSeconds
        server.pushMirrors = reader.bool(serverTable, "push_mirrors", in: "[server]") ?? false
        server.quotas = parseQuotas(server: serverTable, hosts: table["hosts"]?.table, &reader)
        if let line = reader.string(serverTable, "host_key", in: "[server]") {
            do { server.hostKey = try SSHPublicKey(line) } catch {
                reader.problem("[server] key \"host_key\": \(error)")
            }
        }
        if !server.userPrefix.allSatisfy({ ("a"..."z").contains($0) || $0 == "-" }) || server.userPrefix.isEmpty
            || server.userPrefix.count > 16 || server.userPrefix.first == "-"
        {
            reader.problem(
                "[server] key \"user_prefix\": \(quoted(server.userPrefix)) must be 1 to 16 of a-z and '-', starting with a letter"
            )
        }

        let defaults = reader.table(table, "defaults", in: "the top level") ?? TOMLTable()
        reader.checkKeys(defaults, allowed: defaultKeys, in: "[defaults]")
        let defaultOperation = reader.operation(defaults, in: "[defaults]") ?? .switch
        let defaultBuild = reader.bool(defaults, "build", in: "[defaults]") ?? false
        let defaultCache = reader.bool(defaults, "cache", in: "[defaults]") ?? false
        let defaultPollInterval =
            reader.integer(
                defaults, "poll_interval_seconds", in: "[defaults]", range: pollIntervalRange) ?? 900
        let defaultSilentAfter =
            reader.integer(
                defaults, "silent_after_intervals", in: "[defaults]", range: silentAfterRange) ?? 3
        let roles = RoleCatalog.parse(table["roles"], repository: repository, &reader)
        let defaultRoles = reader.stringArray(defaults, "roles", in: "[defaults]") ?? []

        var hosts: [HostConfiguration] = []
        var keyOwners: [String: String] = [:]
        let hostsTable = reader.table(table, "hosts", in: "the top level") ?? TOMLTable()
        for name in hostsTable.keys.sorted() {
            let context = "[hosts.\(name)]"
            guard let hostName = try? HostName(name) else {
                reader.problem(
                    "\(file): \(context): invalid host name \(quoted(name)): host names must match \(HostName.rule)")
                continue
            }
            guard let hostTable = hostsTable[name]?.table else {
                reader.problem("\(file): \(context) must be a table, e.g. [hosts.\(name)] followed by its keys")
                continue
            }
            reader.checkKeys(hostTable, allowed: hostKeys, in: context)
            var publicKey: SSHPublicKey?
            let inline = reader.string(hostTable, "key", in: context)
            let keyFile = reader.string(hostTable, "key_file", in: context)
            if inline != nil && keyFile != nil {
                reader.problem("\(file): \(context): set either \"key\" or \"key_file\", not both")
            } else if let key = reader.hostKey(inline: inline, file: keyFile, repository: repository, in: context) {
                if let owner = keyOwners[key.blob] {
                    reader.problem(
                        "\(file): \(context) key \"\(inline != nil ? "key" : "key_file")\": the same SSH key is already given to host \(owner); each host needs its own key, or one could log in as the other"
                    )
                } else {
                    keyOwners[key.blob] = name
                    publicKey = key
                }
            }
            let attribute = reader.string(hostTable, "attribute", in: context) ?? name
            if !NixAttribute.isValid(attribute) {
                reader.problem(
                    "\(file): \(context) key \"attribute\": \(quoted(attribute)) is not a Nix attribute name fleet accepts ([A-Za-z0-9_][A-Za-z0-9_'-]*)"
                )
            }
            let hostRoles = reader.stringArray(hostTable, "roles", in: context)
            let expandedRoles =
                roles.expand(
                    hostRoles ?? defaultRoles, for: name, in: hostRoles == nil ? "[defaults]" : context,
                    repository: repository, &reader) ?? []
            var isDirectory: ObjCBool = false
            let hostDirectory = repository + "/hosts/" + name
            if !FileManager.default.fileExists(atPath: hostDirectory, isDirectory: &isDirectory)
                || !isDirectory.boolValue
            {
                reader.problem(
                    "\(file): \(context): the host directory hosts/\(name)/ is missing; create it with the host's flake.nix or configuration.nix"
                )
            }
            hosts.append(
                HostConfiguration(
                    name: hostName, publicKey: publicKey, attribute: attribute,
                    operation: reader.operation(hostTable, in: context) ?? defaultOperation,
                    build: reader.bool(hostTable, "build", in: context) ?? defaultBuild,
                    cache: reader.bool(hostTable, "cache", in: context) ?? defaultCache,
                    unixUser: HostConfiguration.unixUser(for: hostName, prefix: server.userPrefix),
                    pollIntervalSeconds: reader.integer(
                        hostTable, "poll_interval_seconds", in: context, range: pollIntervalRange)
                        ?? defaultPollInterval,
                    silentAfterIntervals: reader.integer(
                        hostTable, "silent_after_intervals", in: context, range: silentAfterRange)
                        ?? defaultSilentAfter, roles: expandedRoles))
        }
        var users: [String: String] = [:]
        for host in hosts {
            if let other = users[host.unixUser] {
                reader.problem(
                    "\(file): hosts \(other) and \(host.name) map to the same Unix user \(host.unixUser); shorten one name"
                )
            }
            users[host.unixUser] = host.name.value
        }
        let hooks = parseHooks(table["hooks"], &reader)
        let rollout = RolloutConfiguration.parse(table["rollout"], hosts: hosts.map(\.name), &reader)
        let mirrors = MirrorConfiguration.parse(
            table["mirrors"], primary: (server.address, server.port), &reader)
        if !reader.problems.isEmpty { throw InventoryError(reader.problems) }
        var configuration = FleetConfiguration(
            server: server, hosts: hosts, hooks: hooks, repository: repository, file: file, rollout: rollout)
        configuration.roles = roles
        configuration.mirrors = mirrors
        return configuration
    }

    /// `[[hooks]]` tables: `command` (required, an absolute program path first), `events` (default: all),
    /// `timeout_seconds` (default 10).
    static func parseHooks(_ value: (any TOMLValueConvertible)?, _ reader: inout TOMLReader) -> [HookConfiguration] {
        guard let value else { return [] }
        guard let array = value.array else {
            reader.problem("\"hooks\" must be an array of tables: [[hooks]] with command, events, timeout_seconds")
            return []
        }
        var hooks: [HookConfiguration] = []
        let known = HookEventKind.allCases.map(\.rawValue)
        for (_, context, table) in reader.tables(of: array, named: "[[hooks]]") {
            reader.checkKeys(table, allowed: hookKeys, in: context)
            let command = reader.command(table, in: context)
            var events = HookEventKind.allCases
            if let names = reader.stringArray(table, "events", in: context) {
                events = []
                for name in names {
                    if let kind = HookEventKind(rawValue: name) {
                        if !events.contains(kind) { events.append(kind) }
                    } else {
                        reader.problem(
                            "\(context) key \"events\": \(quoted(name)) is not one of \(known.joined(separator: ", "))")
                    }
                }
                if names.isEmpty {
                    reader.problem("\(context) key \"events\": empty; leave the key out to receive every event")
                }
            }
            let timeout =
                reader.integer(table, "timeout_seconds", in: context, range: 1...3600)
                ?? HookConfiguration.defaultTimeoutSeconds
            if let command {
                hooks.append(HookConfiguration(command: command, events: events, timeoutSeconds: timeout))
            }
        }
        return hooks
    }

    /// Applies overrides (command-line flags, then environment) to the server paths; `source` names where each
    /// came from, for the error when one cannot be a server path.
    public func overriding(
        chrootRoot: (path: String, source: String)?, stateDirectory: (path: String, source: String)?
    ) throws(InventoryError) -> FleetConfiguration {
        func checked(_ override: (path: String, source: String)) throws(InventoryError) -> String {
            let path = FileIO.absolute(override.path)
            if let problem = Server.problem(withPath: path) {
                throw InventoryError("\(override.source) \(quoted(path)): \(problem)")
            }
            return path
        }
        var server = self.server
        if let chrootRoot { server.chrootRoot = try checked(chrootRoot) }
        if let stateDirectory { server.stateDirectory = try checked(stateDirectory) }
        var configuration = FleetConfiguration(
            server: server, hosts: hosts, hooks: hooks, repository: repository, file: file, rollout: rollout)
        configuration.roles = roles
        configuration.mirrors = mirrors
        return configuration
    }

    /// Keeps only the named hosts and, with `roles`, only those having one of them (directly or through an
    /// included role); an unknown name or role is an error naming it.
    public func selecting(_ names: [String], roles: [String] = []) throws(InventoryError) -> [HostConfiguration] {
        let named = try selecting(names)
        if roles.isEmpty { return named }
        let known = Set(hosts.flatMap(\.roles)).union(self.roles.includes.keys)
        let unknown = roles.filter { !known.contains($0) }
        if !unknown.isEmpty {
            throw InventoryError(
                unknown.map {
                    "\(file): no host has the role \(quoted($0)) (roles in use: \(known.sorted().joined(separator: ", ")))"
                })
        }
        return named.filter { host in host.roles.contains { roles.contains($0) } }
    }

    /// Keeps only the named hosts; an unknown name is an error naming it.
    public func selecting(_ names: [String]) throws(InventoryError) -> [HostConfiguration] {
        if names.isEmpty { return hosts }
        var selected: [HostConfiguration] = []
        var problems: [String] = []
        for name in names {
            if let host = host(named: name) {
                if !selected.contains(host) { selected.append(host) }
            } else {
                problems.append(
                    "\(file): no host \(quoted(name)) in the inventory (hosts: \(hosts.map(\.name.value).joined(separator: ", ")))"
                )
            }
        }
        if !problems.isEmpty { throw InventoryError(problems) }
        return selected
    }
}

extension TOMLReader {
    /// The host's key from `key` (inline) or `key_file` (relative to the repository), or nil with the problem
    /// recorded: exactly one key line, so a file or value holding two keys cannot let a second host in.
    mutating func hostKey(inline: String?, file path: String?, repository: String, in context: String)
        -> SSHPublicKey?
    {
        do throws(ProtocolError) {
            if let inline { return try SSHPublicKey(inline) }
            guard let path else { return nil }
            let full = path.hasPrefix("/") ? path : repository + "/" + path
            guard let data = FileManager.default.contents(atPath: full) else {
                problem(
                    "\(file): \(context) key \"key_file\": cannot read \(full); copy the host's /etc/ssh/ssh_host_ed25519_key.pub there"
                )
                return nil
            }
            do throws(ProtocolError) {
                return try SSHPublicKey(fileContents: Array(data))
            } catch {
                problem("\(file): \(context) key \"key_file\": \(full): \(error)")
                return nil
            }
        } catch {
            problem("\(file): \(context) key \"key\": \(error)")
            return nil
        }
    }
}

extension FleetConfiguration.Server {
    /// Why `path` cannot be the chroot root or state directory, or nil. Both are written into sshd_config
    /// (`ChrootDirectory`, `AuthorizedKeysFile`: spaces split, quotes group, `%` expands tokens such as `%u`,
    /// `#` starts a comment) and into rsyslog's configuration, so only plain characters are allowed rather than
    /// a path that would mean another directory there.
    public static func problem(withPath path: String) -> String? {
        let plain = path.unicodeScalars.allSatisfy {
            $0.isASCII
                && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "/._-+@".unicodeScalars.contains($0))
        }
        guard plain else {
            return "may hold only ASCII letters, digits and / . _ - + @ (it is written into sshd_config, where spaces, "
                + "quotes, % and # change its meaning, and into rsyslog's configuration)"
        }
        guard !path.split(separator: "/").contains("..") else { return "must not contain \"..\"" }
        return nil
    }
}
