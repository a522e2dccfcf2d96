public import FleetProtocol
import TOMLKit

/// `[[mirrors]]` of fleet.toml: other OpenSSH servers that serve copies of the chroots, which `fleet mirror push`
/// fills with rsync over SSH and `fleet mirror pull-logs` reads the hosts' uploads back from.
///
/// ```toml
/// [[mirrors]]
/// name = "mirror-a"
/// address = "mirror-a.example.org"
/// port = 22
/// host_key = "ssh-ed25519 AAAA…"
/// push_to = "root@mirror-a.example.org:/srv/fleet"
/// ssh_options = ["-p", "2222", "-i", "/root/.ssh/fleet-mirror"]
/// ```
///
/// `push_to` and `ssh_options` end up on rsync's and ssh's command lines (rsync splits `-e` on spaces), so both
/// are held to a closed shape: anything that could be read as an option, a second argument, a remote shell
/// command or a proxy program is refused where it is read, naming the mirror and the key.
public struct MirrorConfiguration: Sendable, Equatable {
    /// By the host-name rule; unique; ``primaryName`` is reserved for the server itself.
    public var name: String
    /// What hosts connect to (a host name or IP address).
    public var address: String
    public var port: Int
    /// The mirror sshd's host key: hosts pin it, and `fleet mirror` pins it for replication too.
    public var hostKey: SSHPublicKey
    /// The rsync destination over SSH: the mirror's chroot root.
    public var pushTo: PushDestination
    /// Extra ssh arguments for replication, from a short allowed list (see ``sshOptionProblem(_:)``).
    public var sshOptions: [String]

    /// `[user@]host:/absolute/path`, checked.
    public struct PushDestination: Sendable, Equatable, CustomStringConvertible {
        public var user: String?
        public var host: String
        /// The mirror's chroot root, absolute, plain characters only.
        public var path: String

        /// `user@host` (or `host`), the SSH destination.
        public var sshDestination: String { user.map { "\($0)@\(host)" } ?? host }
        /// `user@host:path`, as rsync takes it.
        public var description: String { sshDestination + ":" + path }
        /// A path on the mirror as rsync takes it (`user@host:<path>`).
        public func remote(_ path: String) -> String { sshDestination + ":" + path }

        /// Parses `text`, or says why it cannot be a push destination.
        public static func parse(_ text: String) -> Result<PushDestination, MirrorConfigurationProblem> {
            let example = "e.g. \"root@mirror-a.example.org:/srv/fleet\""
            func fail(_ why: String) -> Result<PushDestination, MirrorConfigurationProblem> {
                .failure(MirrorConfigurationProblem(description: "\(quoted(text)) \(why) (\(example))"))
            }
            if text.hasPrefix("-") { return fail("starts with '-', which rsync would read as an option") }
            if text.contains("::") || text.hasPrefix("rsync://") {
                return fail("names an rsync daemon; fleet pushes over SSH only")
            }
            guard let colon = text.firstIndex(of: ":") else { return fail("has no ':' between the host and the path") }
            let login = String(text[..<colon])
            let path = String(text[text.index(after: colon)...])
            var user: String?
            var host = login
            if let at = login.firstIndex(of: "@") {
                user = String(login[..<at])
                host = String(login[login.index(after: at)...])
            }
            if let user, !isUserName(user) {
                return fail("has the user \(quoted(user)), which is not a plain Unix user name ([a-z_][a-z0-9_-]*)")
            }
            if host.hasPrefix("-") || ServerAddress.problem(host) != nil {
                return fail("has the host \(quoted(host)), which is not a host name or an IPv4 address")
            }
            guard path.hasPrefix("/") else { return fail("has a path that is not absolute") }
            if let problem = FleetConfiguration.Server.problem(withPath: path) {
                return fail("has a path that \(problem)")
            }
            if path.split(separator: "/").isEmpty { return fail("names / as the mirror's chroot root") }
            return .success(PushDestination(user: user, host: host, path: path))
        }

        static func isUserName(_ text: String) -> Bool {
            guard let first = text.unicodeScalars.first, text.utf8.count <= 32,
                first == "_" || ("a"..."z").contains(first)
            else { return false }
            return text.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("0"..."9").contains($0) || "_-".unicodeScalars.contains($0)
            }
        }
    }

    /// The name no mirror may have: the server itself, where it is shown beside mirrors.
    public static let primaryName = MirrorEntry.primaryName
    static let keys = MirrorEntry.keys + ["push_to", "ssh_options"]

    /// ssh's `-o` options allowed in `ssh_options`: how to reach and log in to the mirror. Everything else is
    /// refused: what runs a program (`ProxyCommand`, `LocalCommand`, `KnownHostsCommand`, …), forwards something,
    /// or overrides the host-key pinning fleet sets itself (`StrictHostKeyChecking`, `UserKnownHostsFile`, …).
    public static let allowedSSHConfigOptions = [
        "Port", "IdentityFile", "IdentitiesOnly", "ConnectTimeout", "ConnectionAttempts", "ServerAliveInterval",
        "ServerAliveCountMax", "Compression", "AddressFamily", "User",
    ]
    /// Flags allowed alone, and those taking one value.
    static let allowedSSHFlags = ["-4", "-6", "-C"]
    static let allowedSSHFlagsWithValue = ["-p", "-i", "-o", "-l"]

    /// Why `options` cannot be passed to ssh, or nil. Every element is one ssh argument without spaces, quotes or
    /// backslashes (rsync splits `-e` on spaces and reads quotes), and only the flags above are accepted.
    public static func sshOptionProblem(_ options: [String]) -> String? {
        for option in options {
            let plain = option.unicodeScalars.allSatisfy {
                $0.isASCII && $0.value > 0x20 && $0.value < 0x7f && !"\"'\\`$;|&<>(){}*?#~".unicodeScalars.contains($0)
            }
            guard plain, !option.isEmpty else {
                return "\(quoted(option)) is empty or holds a space, quote, shell or control character (one ssh "
                    + "argument per element)"
            }
        }
        var index = 0
        while index < options.count {
            let option = options[index]
            if allowedSSHFlags.contains(option) {
                index += 1
                continue
            }
            // `-oName=value` and `-p2222` in one element, or the flag and its value as two.
            var flag = option
            var value: String?
            if option.count > 2, let prefix = allowedSSHFlagsWithValue.first(where: { option.hasPrefix($0) }) {
                flag = prefix
                value = String(option.dropFirst(2))
            } else if allowedSSHFlagsWithValue.contains(option) {
                guard index + 1 < options.count else { return "\(quoted(option)) needs a value after it" }
                value = options[index + 1]
                index += 1
            }
            guard let value, allowedSSHFlagsWithValue.contains(flag) else {
                return
                    "\(quoted(option)) is not an ssh option fleet passes (allowed: \((allowedSSHFlags + allowedSSHFlagsWithValue).joined(separator: " ")), -o with \(allowedSSHConfigOptions.joined(separator: ", ")))"
            }
            if let problem = valueProblem(flag: flag, value) { return problem }
            index += 1
        }
        return nil
    }

    private static func valueProblem(flag: String, _ value: String) -> String? {
        if value.hasPrefix("-") { return "the value \(quoted(value)) of \(flag) starts with '-'" }
        switch flag {
        case "-p":
            guard let port = Int(value), (1...65535).contains(port) else {
                return "-p \(quoted(value)): expected a port in 1...65535"
            }
        case "-i":
            guard value.hasPrefix("/"), FleetConfiguration.Server.problem(withPath: value) == nil else {
                return "-i \(quoted(value)): expected an absolute path of plain characters"
            }
        case "-l":
            guard PushDestination.isUserName(value) else { return "-l \(quoted(value)): not a plain Unix user name" }
        default:  // -o
            let parts = value.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[1].isEmpty else {
                return "-o \(quoted(value)): write it as Name=value (e.g. -oConnectTimeout=10)"
            }
            let name = String(parts[0])
            guard let known = allowedSSHConfigOptions.first(where: { $0.lowercased() == name.lowercased() }) else {
                return
                    "-o \(quoted(name)) is not allowed (allowed: \(allowedSSHConfigOptions.joined(separator: ", "))); "
                    + "fleet pins the mirror's host key itself, and options that run programs or forward are refused"
            }
            if known == "IdentityFile", !(parts[1].hasPrefix("/")) {
                return "-o IdentityFile needs an absolute path"
            }
        }
        return nil
    }

    /// Reads `[[mirrors]]`; every problem is recorded in `reader`, naming fleet.toml and the mirror. `primary` is
    /// `[server]`'s address and port: no mirror may be there, and no two mirrors at one address and port (hosts
    /// would ask one server twice, and `fleet client-config` would refuse the first only later, per host).
    static func parse(
        _ value: (any TOMLValueConvertible)?, primary: (address: String, port: Int), _ reader: inout TOMLReader
    ) -> [MirrorConfiguration] {
        guard let value else { return [] }
        guard let array = value.array else {
            reader.problem(
                "\"mirrors\" must be an array of tables: [[mirrors]] with name, address, port, host_key, push_to")
            return []
        }
        var entries = MirrorEntry.Reader(primary: primary)
        var mirrors: [MirrorConfiguration] = []
        for (_, context, table) in reader.tables(of: array, named: "[[mirrors]]") {
            reader.checkKeys(table, allowed: keys, in: context)
            // name, address, port and host_key by the rules client.toml's [[servers]] follows.
            let (label, entry) = entries.read(table, context: context, &reader)
            var pushTo: PushDestination?
            if table["push_to"] == nil {
                reader.problem(
                    MirrorEntry.missing(
                        "push_to", in: label, what: "the mirror's chroot root, for rsync over SSH",
                        example: "\"root@mirror-a.example.org:/srv/fleet\""))
            } else if let text = reader.string(table, "push_to", in: label) {
                switch PushDestination.parse(text) {
                case .success(let destination): pushTo = destination
                case .failure(let problem): reader.problem("\(label) key \"push_to\": \(problem)")
                }
            }
            var options: [String]? = []
            if table["ssh_options"] != nil {
                options = reader.stringArray(table, "ssh_options", in: label)
                if let given = options, let problem = sshOptionProblem(given) {
                    reader.problem("\(label) key \"ssh_options\": \(problem)")
                    options = nil
                }
            }
            if let entry, let pushTo, let options {
                mirrors.append(
                    MirrorConfiguration(
                        name: entry.name, address: entry.address, port: entry.port, hostKey: entry.hostKey,
                        pushTo: pushTo, sshOptions: options))
            }
        }
        return mirrors
    }
}

/// Why a `[[mirrors]]` value was refused.
public struct MirrorConfigurationProblem: Error, CustomStringConvertible, Sendable {
    public let description: String
}
