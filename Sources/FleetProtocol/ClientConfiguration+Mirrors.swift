import TOMLKit

extension ClientConfiguration {
    /// One `[[servers]]` entry: a mirror of the fleet server, tried in order after `[server]` when that cannot
    /// be reached or serves no usable manifest. The user name, identity file and timeouts are `[server]`'s.
    ///
    /// A mirror needs no trust beyond its pinned host key: manifests are signed by the fleet key and expire, so
    /// a mirror can serve an old manifest at worst, and the client skips that like a downgrade.
    public struct Mirror: Sendable, Equatable {
        /// Named in logs, reports and `fleet status`; host-name rules, unique, never ``primaryName``.
        public var name: String
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
    }

    /// What reports and logs call `[server]`; no mirror may take the name.
    public static let primaryName = "primary"
    /// More mirrors than this is a list no run could try within its retry budget: a mistake, not a setup.
    public static let mirrorLimit = 16
    static let mirrorKeys = ["name", "address", "port", "host_key"]

    static func parseMirrors(
        _ value: (any TOMLValueConvertible)?, primary: (address: String?, port: Int),
        _ reader: inout TOMLReader
    ) -> [Mirror] {
        guard let value else { return [] }
        guard let array = value.array else {
            reader.problem("\"servers\" must be an array of tables: [[servers]] with name, address, port, host_key")
            return []
        }
        guard array.count <= mirrorLimit else {
            reader.problem("[[servers]]: \(array.count) mirrors, at most \(mirrorLimit) are allowed")
            return []
        }
        var mirrors: [Mirror] = []
        var names: Set<String> = []
        var endpoints: [String: String] = [:]
        if let address = primary.address { endpoints[endpointKey(address, primary.port)] = "[server]" }
        for (_, context, table) in reader.tables(of: array, named: "[[servers]]") {
            reader.checkKeys(table, allowed: mirrorKeys, in: context)
            var name: String?
            if table["name"] == nil {
                reader.problem("\(context): the key \"name\" is required")
            } else if let given = reader.string(table, "name", in: context) {
                if !HostName.isValid(given) {
                    reader.problem(
                        "\(context) key \"name\": \(shown(given)) is not a server name (host-name rules: "
                            + "\(HostName.rule))")
                } else if given == primaryName {
                    reader.problem(
                        "\(context) key \"name\": \"\(primaryName)\" is reserved for [server]; give the mirror a name "
                            + "of its own")
                } else if !names.insert(given).inserted {
                    reader.problem("\(context) key \"name\": \(quoted(given)) is the name of an earlier mirror")
                } else {
                    name = given
                }
            }
            let label = name.map { "\(context) (\($0))" } ?? context
            var address: String?
            if table["address"] == nil {
                reader.problem("\(label): the key \"address\" is required")
            } else if let given = reader.string(table, "address", in: label) {
                if let problem = ServerAddress.problem(given) {
                    reader.problem("\(label) key \"address\": \(problem)")
                } else {
                    address = given
                }
            }
            let port = reader.integer(table, "port", in: label, range: 1...65535) ?? 22
            var hostKey: SSHPublicKey?
            if table["host_key"] == nil {
                reader.problem("\(label): the key \"host_key\" is required (the mirror's pinned SSH host key)")
            } else if let line = reader.string(table, "host_key", in: label) {
                do { hostKey = try SSHPublicKey(line) } catch { reader.problem("\(label) key \"host_key\": \(error)") }
            }
            if let address {
                // The same server twice is a typo (a copied entry): it would only be asked twice.
                if let earlier = endpoints.updateValue(label, forKey: endpointKey(address, port)) {
                    reader.problem("\(label): \(address) port \(port) is already \(earlier)'s address and port")
                }
            }
            if let name, let address, let hostKey {
                mirrors.append(Mirror(name: name, address: address, port: port, hostKey: hostKey))
            }
        }
        return mirrors
    }

    private static func endpointKey(_ address: String, _ port: Int) -> String { "\(address.lowercased()) \(port)" }

    /// A hostile value shown whole when short, cut when long, so that a message stays one readable line.
    private static func shown(_ value: String) -> String {
        value.utf8.count <= 80 ? quoted(value) : quoted(String(value.prefix(40))) + "… (\(value.utf8.count) bytes)"
    }

    func renderedMirrors() -> [String] {
        guard !mirrors.isEmpty else {
            return [
                "",
                "# Mirrors, tried in this order when [server] cannot be reached or serves no usable manifest:",
                "# [[servers]]",
                "# name = \"mirror-a\"",
                "# address = \"mirror-a.example.org\"",
                "# port = 22",
                "# host_key = \"ssh-ed25519 AAAA…\"",
            ]
        }
        var lines = [
            "",
            "# Mirrors, tried in this order when [server] cannot be reached or serves no usable manifest (the same",
            "# user, identity file and timeouts; each host key pinned like [server]'s).",
        ]
        for mirror in mirrors {
            lines += [
                "[[servers]]",
                "name = \(tomlString(mirror.name))",
                "address = \(tomlString(mirror.address))",
                "port = \(mirror.port)",
                "host_key = \(tomlString(mirror.hostKey.description))",
            ]
        }
        return lines
    }
}
