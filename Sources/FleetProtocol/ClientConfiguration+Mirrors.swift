import TOMLKit

extension ClientConfiguration {
    /// One `[[servers]]` entry: a mirror of the fleet server, tried in order after `[server]` when that cannot
    /// be reached or serves no usable manifest. The user name, identity file and timeouts are `[server]`'s; the
    /// entry's keys are read by the rules fleet.toml's `[[mirrors]]` follows too (``MirrorEntry``).
    public typealias Mirror = MirrorEntry

    /// What reports and logs call `[server]`; no mirror may take the name.
    public static let primaryName = MirrorEntry.primaryName
    /// More mirrors than this is a list no run could try within its retry budget: a mistake, not a setup.
    public static let mirrorLimit = 16
    static let mirrorKeys = MirrorEntry.keys

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
        var entries = MirrorEntry.Reader(primary: primary.address.map { ($0, primary.port) })
        var mirrors: [Mirror] = []
        for (_, context, table) in reader.tables(of: array, named: "[[servers]]") {
            reader.checkKeys(table, allowed: mirrorKeys, in: context)
            if let mirror = entries.read(table, context: context, &reader).entry { mirrors.append(mirror) }
        }
        return mirrors
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
