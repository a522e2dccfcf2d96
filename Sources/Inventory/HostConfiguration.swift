public import FleetProtocol

/// One `[hosts.<name>]` table of fleet.toml, with defaults applied.
public struct HostConfiguration: Sendable, Equatable {
    public let name: HostName
    /// The host's SSH public key (normally its own /etc/ssh/ssh_host_ed25519_key.pub); nil until known.
    public let publicKey: SSHPublicKey?
    /// `nixosConfigurations.<attribute>`.
    public let attribute: String
    public let operation: Operation
    /// Build on the server before publishing (the build gate).
    public let build: Bool
    /// Ship a binary cache of the built closure.
    public let cache: Bool
    /// The Unix account the host logs in as.
    public let unixUser: String
    /// How often the host polls (its timer's interval), in seconds.
    public let pollIntervalSeconds: Int
    /// `fleet status` calls the host silent when nothing was heard from it for this many poll intervals.
    public let silentAfterIntervals: Int
    /// The host's roles in the order their modules are imported: included roles first, each once.
    public let roles: [String]

    public init(
        name: HostName, publicKey: SSHPublicKey?, attribute: String, operation: Operation, build: Bool, cache: Bool,
        unixUser: String, pollIntervalSeconds: Int = 900, silentAfterIntervals: Int = 3, roles: [String] = []
    ) {
        self.name = name
        self.publicKey = publicKey
        self.attribute = attribute
        self.operation = operation
        self.build = build
        self.cache = cache
        self.unixUser = unixUser
        self.pollIntervalSeconds = pollIntervalSeconds
        self.silentAfterIntervals = silentAfterIntervals
        self.roles = roles
    }

    /// How long the host may stay unheard before it is silent.
    public var silenceLimitSeconds: Int { pollIntervalSeconds * silentAfterIntervals }

    /// The Unix user for a host: `<prefix><host>`, or, when that exceeds the 32 characters useradd allows,
    /// the prefix, the first characters of the name and 8 hex digits of its SHA-256 (still unique and stable).
    public static func unixUser(for host: HostName, prefix: String) -> String {
        let plain = prefix + host.value
        if plain.count <= 32 { return plain }
        let digest = String(SHA256Hasher.hex(Array(host.value.utf8)).prefix(8))
        let room = 32 - prefix.count - 9
        return prefix + host.value.prefix(room) + "-" + digest
    }
}
