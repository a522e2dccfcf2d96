import Foundation
import TOMLKit

/// A host's `/etc/fleet/client.toml`: where its server is, which keys it trusts, where it keeps its state.
///
/// The server writes it (`fleet client-config HOST`) and the client reads it, so both sides share this one
/// parser: whatever the server renders is known to parse. Validation reports every problem at once.
public struct ClientConfiguration: Sendable, Equatable {
    /// `[server]`: the fleet server and how to reach it.
    public struct Server: Sendable, Equatable {
        public var address: String
        public var port: Int
        /// The host's Unix user on the server (`<user_prefix><host>`).
        public var user: String
        /// The server's SSH host key, one OpenSSH line; the connection is refused when the server shows another.
        public var hostKey: SSHPublicKey
        public var connectTimeoutSeconds: Int
        /// A transfer that makes no progress for this long is abandoned.
        public var ioTimeoutSeconds: Int
        /// How long a run keeps retrying servers it cannot connect to (refused, reset or timed out before
        /// authentication), with jittered exponential back-off; 0: one attempt. One budget for `[server]` and the
        /// mirrors together (``ClientConfiguration/mirrors``).
        public var connectRetrySeconds: Int = 180

        public init(
            address: String, port: Int = 22, user: String, hostKey: SSHPublicKey, connectTimeoutSeconds: Int = 10,
            ioTimeoutSeconds: Int = 60, connectRetrySeconds: Int = 180
        ) {
            self.connectRetrySeconds = connectRetrySeconds
            self.address = address
            self.port = port
            self.user = user
            self.hostKey = hostKey
            self.connectTimeoutSeconds = connectTimeoutSeconds
            self.ioTimeoutSeconds = ioTimeoutSeconds
        }
    }

    public static let defaultPath = "/etc/fleet/client.toml"
    public static let defaultIdentityFile = "/etc/ssh/ssh_host_ed25519_key"
    public static let defaultStateDirectory = "/var/lib/fleet-client"
    public static let defaultProfile = "/nix/var/nix/profiles/system"
    /// 15 minutes, the timer's interval when client.toml does not say.
    public static let defaultPollIntervalSeconds = 900
    /// At least a minute (polling more often loads the server for little), at most a week.
    public static let pollIntervalRange = 60...(7 * 86400)

    public var host: HostName
    public var server: Server
    /// `[[servers]]`: mirrors tried in this order after ``server`` (see ``Mirror``).
    public var mirrors: [Mirror]
    /// The fleet's manifest-signing public key, `name:base64` (the server's `signing.pub`).
    public var fleetPublicKey: VerifyingKey
    /// The SSH private key the host logs in with.
    public var identityFile: String
    public var stateDirectory: String
    /// The Nix profile whose generations are the host's systems.
    public var profile: String
    /// Overrides the operation the manifest asks for (e.g. `boot` on a machine that must not change while in use).
    public var operation: Operation?
    /// Run logs larger than this are cut in the middle, saying so.
    public var logLimitBytes: Int
    /// Extracted generations kept besides the current one.
    public var keepGenerations: Int
    /// How often this host polls, in seconds: the one source of the timer's interval (`fleet-client
    /// install-units` and the NixOS module read it from here), and what the host tells the server in every
    /// heartbeat and report so that `fleet status` knows when it has gone silent.
    public var pollIntervalSeconds: Int
    public var rollback: Rollback
    public var timeouts: Timeouts
    public var healthChecks: [HealthCheck]
    public var reboot: Reboot
    public var overlays: Overlays

    public init(
        host: HostName, server: Server, fleetPublicKey: VerifyingKey, identityFile: String = defaultIdentityFile,
        stateDirectory: String = defaultStateDirectory, profile: String = defaultProfile, operation: Operation? = nil,
        logLimitBytes: Int = 4 << 20, keepGenerations: Int = 2, rollback: Rollback = Rollback(),
        healthChecks: [HealthCheck] = [], reboot: Reboot = Reboot(),
        pollIntervalSeconds: Int = defaultPollIntervalSeconds, timeouts: Timeouts = Timeouts(),
        overlays: Overlays = Overlays(), mirrors: [Mirror] = []
    ) {
        self.mirrors = mirrors
        self.timeouts = timeouts
        self.overlays = overlays
        self.host = host
        self.server = server
        self.fleetPublicKey = fleetPublicKey
        self.identityFile = identityFile
        self.stateDirectory = stateDirectory
        self.profile = profile
        self.operation = operation
        self.logLimitBytes = logLimitBytes
        self.keepGenerations = keepGenerations
        self.rollback = rollback
        self.healthChecks = healthChecks
        self.reboot = reboot
        self.pollIntervalSeconds = pollIntervalSeconds
    }

    /// Every key client.toml may hold, by table ("" for the top level; `health_checks` is an array of tables).
    public static var knownKeys: [String: [String]] {
        [
            "": topKeys, "server": serverKeys, "rollback": rollbackKeys, "reboot": rebootKeys, "timeouts": timeoutKeys,
            "overlays": overlayKeys, "health_checks": healthCheckKeys, "servers": mirrorKeys,
        ]
    }

    static let topKeys = [
        "host", "fleet_public_key", "identity_file", "state_dir", "profile", "operation", "log_limit_bytes",
        "keep_generations", "poll_interval_seconds", "server", "rollback", "health_checks", "reboot", "timeouts",
        "overlays", "servers",
    ]
    static let serverKeys = [
        "address", "port", "user", "host_key", "connect_timeout_seconds", "io_timeout_seconds", "connect_retry_seconds",
    ]

    /// Reads and validates a client.toml file.
    public static func load(path: String) throws(ConfigurationError) -> ClientConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(
                ["\(path): cannot read the client configuration (on the server, `fleet client-config HOST` prints one)"]
            )
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(["\(path): not UTF-8 text"])
        }
        return try parse(text, file: path)
    }

    /// Validates client.toml text; `file` names it in messages.
    public static func parse(_ text: String, file: String) throws(ConfigurationError) -> ClientConfiguration {
        let table: TOMLTable
        switch TOMLReader.parse(text, file: file) {
        case .success(let parsed): table = parsed
        case .failure(let error): throw ConfigurationError([error.description])
        }
        var reader = TOMLReader(file: file)
        reader.checkKeys(table, allowed: topKeys, in: "the top level")
        let serverTable = reader.table(table, "server", in: "the top level")
        if serverTable == nil && table["server"] == nil {
            reader.problem("the [server] table is missing (address, user and host_key are required)")
        }
        let serverKeysTable = serverTable ?? TOMLTable()
        reader.checkKeys(serverKeysTable, allowed: serverKeys, in: "[server]")

        var host: HostName?
        if let name = required(&reader, table, "host", in: "the top level") {
            do { host = try HostName(name) } catch { reader.problem("key \"host\": \(error)") }
        }
        var fleetKey: VerifyingKey?
        if let text = required(&reader, table, "fleet_public_key", in: "the top level") {
            do {
                fleetKey = try VerifyingKey(nixFormat: text)
            } catch {
                reader.problem("key \"fleet_public_key\": \(error) (expected the server's signing.pub, name:base64)")
            }
        }
        var address = required(&reader, serverKeysTable, "address", in: "[server]")
        if let given = address, let problem = ServerAddress.problem(given) {
            reader.problem("[server] key \"address\": \(problem)")
            address = nil
        }
        let port = reader.integer(serverKeysTable, "port", in: "[server]", range: 1...65535) ?? 22
        let user = required(&reader, serverKeysTable, "user", in: "[server]")
        if let user, !isUnixUserName(user) {
            reader.problem("[server] key \"user\": \(quoted(user)) is not a Unix user name fleet creates")
        }
        var hostKey: SSHPublicKey?
        if let line = required(&reader, serverKeysTable, "host_key", in: "[server]") {
            do { hostKey = try SSHPublicKey(line) } catch { reader.problem("[server] key \"host_key\": \(error)") }
        }
        let connectTimeout =
            reader.integer(serverKeysTable, "connect_timeout_seconds", in: "[server]", range: 1...600) ?? 10
        let ioTimeout = reader.integer(serverKeysTable, "io_timeout_seconds", in: "[server]", range: 1...3600) ?? 60
        let connectRetry =
            reader.integer(serverKeysTable, "connect_retry_seconds", in: "[server]", range: 0...3600) ?? 180
        let identityFile = reader.absolutePath(table, "identity_file", in: "the top level") ?? defaultIdentityFile
        let stateDirectory = reader.absolutePath(table, "state_dir", in: "the top level") ?? defaultStateDirectory
        let profile = reader.absolutePath(table, "profile", in: "the top level") ?? defaultProfile
        let operation = reader.operation(table, in: "the top level")
        let logLimit = reader.integer(table, "log_limit_bytes", in: "the top level", range: (64 << 10)...(1 << 30))
        let keep = reader.integer(table, "keep_generations", in: "the top level", range: 0...100)
        let pollInterval = reader.integer(
            table, "poll_interval_seconds", in: "the top level", range: pollIntervalRange)
        let rollback = parseRollback(reader.table(table, "rollback", in: "the top level"), &reader)
        let healthChecks = parseHealthChecks(table["health_checks"], &reader)
        let reboot = parseReboot(reader.table(table, "reboot", in: "the top level"), &reader)
        let timeouts = parseTimeouts(reader.table(table, "timeouts", in: "the top level"), &reader)
        let overlays = parseOverlays(reader.table(table, "overlays", in: "the top level"), &reader)
        let mirrors = parseMirrors(table["servers"], primary: (address, port), &reader)

        guard reader.problems.isEmpty, let host, let fleetKey, let address, let user, let hostKey else {
            throw ConfigurationError(reader.problems)
        }
        return ClientConfiguration(
            host: host,
            server: Server(
                address: address, port: port, user: user, hostKey: hostKey, connectTimeoutSeconds: connectTimeout,
                ioTimeoutSeconds: ioTimeout, connectRetrySeconds: connectRetry),
            fleetPublicKey: fleetKey, identityFile: identityFile, stateDirectory: stateDirectory, profile: profile,
            operation: operation, logLimitBytes: logLimit ?? 4 << 20, keepGenerations: keep ?? 2, rollback: rollback,
            healthChecks: healthChecks, reboot: reboot,
            pollIntervalSeconds: pollInterval ?? defaultPollIntervalSeconds, timeouts: timeouts,
            overlays: overlays, mirrors: mirrors)
    }

    private static func required(_ reader: inout TOMLReader, _ table: TOMLTable, _ key: String, in context: String)
        -> String?
    {
        guard table[key] != nil else {
            reader.problem("\(context): the key \(quoted(key)) is required")
            return nil
        }
        return reader.string(table, key, in: context)
    }

    private static func isUnixUserName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...32).contains(bytes.count), let first = bytes.first, first != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
        }
    }

    /// The file's text, with comments that say what each key is for.
    public func rendered() -> String {
        var lines = [
            "# /etc/fleet/client.toml for host \(host): read by fleet-client.",
            "host = \(tomlString(host.value))",
            "# Manifests must be signed by this key (the fleet server's signing.pub).",
            "fleet_public_key = \(tomlString(fleetPublicKey.nixFormat))",
            "# The private key this host logs in with; its public half is in the server's fleet.toml.",
            "identity_file = \(tomlString(identityFile))",
            "state_dir = \(tomlString(stateDirectory))",
            "profile = \(tomlString(profile))",
        ]
        if let operation {
            lines.append("# Overrides the operation the server publishes.")
            lines.append("operation = \(tomlString(operation.rawValue))")
        } else {
            lines.append("# operation = \"boot\"    # uncomment to override the operation the server publishes")
        }
        lines += [
            "log_limit_bytes = \(logLimitBytes)",
            "keep_generations = \(keepGenerations)",
            "# How often this host polls, in seconds: fleet-client install-units and the NixOS module set the timer",
            "# from it, and the host tells the server, which calls it silent after a few missed polls.",
            "poll_interval_seconds = \(pollIntervalSeconds)",
            "",
            "[server]",
            "address = \(tomlString(server.address))",
            "port = \(server.port)",
            "user = \(tomlString(server.user))",
            "# Pinned: the client refuses a server that shows any other host key.",
            "host_key = \(tomlString(server.hostKey.description))",
            "connect_timeout_seconds = \(server.connectTimeoutSeconds)",
            "io_timeout_seconds = \(server.ioTimeoutSeconds)",
            "# Servers that cannot be reached ([server] and any [[servers]] mirrors) are tried again for this long,",
            "# all within this one budget (jittered back-off; 0: once).",
            "connect_retry_seconds = \(server.connectRetrySeconds)",
        ]
        lines += renderedMirrors()
        lines += renderedSafety()
        lines += renderedTimeouts()
        lines += renderedOverlays()
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Every problem found in a client.toml, one per line.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let problems: [String]

    public init(_ problems: [String]) {
        self.problems = problems
    }

    public var description: String { problems.joined(separator: "\n") }
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
func tomlString(_ value: String) -> String {
    var result = "\""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\t": result += "\\t"
        case _ where scalar.value < 0x20 || scalar.value == 0x7f:
            result +=
                "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                + String(scalar.value, radix: 16)
        default: result.unicodeScalars.append(scalar)
        }
    }
    return result + "\""
}
