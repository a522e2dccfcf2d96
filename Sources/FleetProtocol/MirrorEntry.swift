public import TOMLKit

/// What fleet.toml's `[[mirrors]]` and client.toml's `[[servers]]` both say of a mirror: its name, the address and
/// port hosts connect to, and its pinned host key. Both files read these four keys here, by one set of rules, so a
/// mirror fleet.toml accepts is one that client.toml (written from it by `fleet client-config`) accepts too.
///
/// A mirror needs no trust beyond its pinned host key: manifests are signed by the fleet key and expire, so a
/// mirror can serve an old manifest at worst, and the client skips that like a downgrade.
public struct MirrorEntry: Sendable, Equatable {
    /// Named in logs, reports and `fleet status`; host-name rules, unique, never ``primaryName``.
    public var name: String
    /// What hosts connect to (a host name or IPv4 address).
    public var address: String
    public var port: Int
    /// Pinned like `[server]`'s: a mirror that shows another key is skipped, never trusted.
    public var hostKey: SSHPublicKey

    public init(name: String, address: String, port: Int = 22, hostKey: SSHPublicKey) {
        self.name = name
        self.address = address
        self.port = port
        self.hostKey = hostKey
    }

    /// What reports, logs and fleet's output call `[server]`; no mirror may take the name.
    public static let primaryName = "primary"
    /// The keys read here; each file allows these and its own.
    public static let keys = ["name", "address", "port", "host_key"]

    /// Reads the mirror entries of one file, in order, remembering what the earlier ones took: names are unique,
    /// and no two entries (nor an entry and `[server]`) are at one address and port. Every problem goes to the
    /// file's ``TOMLReader`` (which names the file), naming the entry and the key.
    public struct Reader {
        private var names: Set<String> = []
        /// `address port` (lower case) → the label of the entry (or `[server]`) there.
        private var endpoints: [String: String] = [:]

        /// - Parameter primary: `[server]`'s address and port, when known: no mirror may be there.
        public init(primary: (address: String, port: Int)?) {
            if let primary { endpoints[Self.endpointKey(primary.address, primary.port)] = "[server]" }
        }

        /// Reads the four keys of one entry (`context`: `[[mirrors]] #2`); the caller checks the keys it allows.
        ///
        /// - Returns: the entry's label for the caller's own messages (`[[mirrors]] #2 (mirror-b)` once the name is
        ///   valid), and the entry, nil when any of the four is missing or refused.
        public mutating func read(_ table: TOMLTable, context: String, _ reader: inout TOMLReader) -> (
            label: String, entry: MirrorEntry?
        ) {
            var name: String?
            if table["name"] == nil {
                reader.problem(MirrorEntry.missing("name", in: context, what: "the mirror's name in fleet's output"))
            } else if let given = reader.string(table, "name", in: context) {
                if !HostName.isValid(given) {
                    reader.problem(
                        "\(context) key \"name\": \(MirrorEntry.shown(given)) is not a server name (host-name rules: "
                            + "\(HostName.rule))")
                } else if given == MirrorEntry.primaryName {
                    reader.problem(
                        "\(context) key \"name\": \"\(MirrorEntry.primaryName)\" is reserved for this server "
                            + "([server]) in fleet's output; give the mirror a name of its own")
                } else if !names.insert(given).inserted {
                    reader.problem(
                        "\(context) key \"name\": \(quoted(given)) is the name of an earlier mirror; give each "
                            + "mirror its own name")
                } else {
                    name = given
                }
            }
            let label = name.map { "\(context) (\($0))" } ?? context
            var address: String?
            if table["address"] == nil {
                reader.problem(
                    MirrorEntry.missing(
                        "address", in: label, what: "what hosts connect to", example: "\"mirror-a.example.org\""))
            } else if let given = reader.string(table, "address", in: label) {
                if let problem = ServerAddress.problem(given) {
                    reader.problem("\(label) key \"address\": \(problem)")
                } else {
                    address = given
                }
            }
            let port = table["port"] == nil ? 22 : reader.integer(table, "port", in: label, range: 1...65535)
            var hostKey: SSHPublicKey?
            if table["host_key"] == nil {
                reader.problem(
                    MirrorEntry.missing(
                        "host_key", in: label, what: "the mirror's pinned SSH host key",
                        example: "\"ssh-ed25519 AAAA…\" (the mirror's /etc/ssh/ssh_host_ed25519_key.pub)"))
            } else if let line = reader.string(table, "host_key", in: label) {
                do { hostKey = try SSHPublicKey(line) } catch { reader.problem("\(label) key \"host_key\": \(error)") }
            }
            // The same server twice is a copied entry: it would only be asked twice. An entry already refused for
            // its name is not refused again for this.
            if name != nil, let address, let port {
                if let earlier = endpoints.updateValue(label, forKey: Self.endpointKey(address, port)) {
                    let fix =
                        earlier == "[server]"
                        ? "a mirror must be another server than the one hosts connect to first: give it its own "
                            + "address or port, or remove it"
                        : "hosts would ask one server twice: give each mirror its own address or port, or remove one"
                    reader.problem("\(label): \(address) port \(port) is already \(earlier)'s address and port; \(fix)")
                    return (label, nil)
                }
            }
            guard let name, let address, let port, let hostKey else { return (label, nil) }
            return (label, MirrorEntry(name: name, address: address, port: port, hostKey: hostKey))
        }

        /// One server's address and port as hosts reach it (host names are case-insensitive).
        static func endpointKey(_ address: String, _ port: Int) -> String { "\(address.lowercased()) \(port)" }
    }

    /// The problem of a required key that is missing, worded as this module's other required keys are:
    /// `<label>: the key "push_to" is required (…), e.g. push_to = …`.
    public static func missing(_ key: String, in label: String, what: String, example: String = "\"mirror-a\"")
        -> String
    {
        "\(label): the key \(quoted(key)) is required (\(what)), e.g. \(key) = \(example)"
    }

    /// A hostile value shown whole when short, cut when long, so that a message stays one readable line.
    public static func shown(_ value: String) -> String {
        value.utf8.count <= 80 ? quoted(value) : quoted(String(value.prefix(40))) + "… (\(value.utf8.count) bytes)"
    }
}
