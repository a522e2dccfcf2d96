public import FleetProtocol
import Glibc
import TOMLKit

/// `[[rollout.rings]]` of fleet.toml: the order in which a new generation reaches the hosts.
///
/// ```toml
/// [[rollout.rings]]
/// name = "canary"
/// hosts = ["web-01"]
/// soak_seconds = 3600
///
/// [[rollout.rings]]
/// name = "wave"
/// hosts = ["web-*", "db-0?"]
/// max_failures = 1
/// ```
///
/// A host belongs to at most one ring (a host matched by two is an error, so that moving a pattern never moves
/// a host silently); hosts in no ring form a last ring of their own, ``restName``. Without rings, a publish
/// reaches every host at once, as it always did.
public struct RolloutConfiguration: Sendable, Equatable {
    public struct Ring: Sendable, Equatable {
        /// A name by the host-name rule (it is shown in tables and given to `fleet rollout promote`).
        public var name: String
        /// The host names and glob patterns (`*`, `?`, `[…]`) as written.
        public var patterns: [String]
        /// The hosts they matched, sorted.
        public var hosts: [HostName]
        /// How long every host of the ring must have run the generation without a failure, rollback or silence
        /// before the next ring gets it.
        public var soakSeconds: Int
        /// How many hosts of the ring may fail, roll back or go silent before the rollout halts.
        public var maxFailures: Int

        public init(name: String, patterns: [String], hosts: [HostName], soakSeconds: Int = 0, maxFailures: Int = 0) {
            self.name = name
            self.patterns = patterns
            self.hosts = hosts
            self.soakSeconds = soakSeconds
            self.maxFailures = maxFailures
        }
    }

    /// The configured rings in order, then ``restName`` when some host is in none. Empty: no rollout.
    public var rings: [Ring]

    /// The ring of the hosts that no configured ring names.
    public static let restName = "rest"
    static let rolloutKeys = ["rings"]
    static let ringKeys = ["name", "hosts", "soak_seconds", "max_failures"]
    static let soakRange = 0...(30 * 86400)
    static let maxFailuresRange = 0...100_000

    public init(rings: [Ring] = []) { self.rings = rings }

    /// Whether publishes go ring by ring.
    public var isEnabled: Bool { !rings.isEmpty }

    /// The index of the ring `host` is in (every host is in one when rings are configured).
    public func ringIndex(of host: HostName) -> Int? { rings.firstIndex { $0.hosts.contains(host) } }

    public func ring(named name: String) -> Int? { rings.firstIndex { $0.name == name } }

    /// Whether `pattern` is a glob rather than a plain host name.
    static func isPattern(_ text: String) -> Bool { text.contains { "*?[".contains($0) } }

    static func matches(_ pattern: String, _ host: HostName) -> Bool {
        fnmatch(pattern, host.value, 0) == 0
    }

    /// Reads `[rollout]`; every problem is recorded in `reader`, naming fleet.toml and the ring.
    static func parse(
        _ value: (any TOMLValueConvertible)?, hosts: [HostName], _ reader: inout TOMLReader
    ) -> RolloutConfiguration {
        guard let value else { return RolloutConfiguration() }
        guard let table = value.table else {
            reader.problem("[rollout] must be a table holding [[rollout.rings]]")
            return RolloutConfiguration()
        }
        reader.checkKeys(table, allowed: rolloutKeys, in: "[rollout]")
        guard let ringsValue = table["rings"] else { return RolloutConfiguration() }
        guard let array = ringsValue.array else {
            reader.problem(
                "[rollout] key \"rings\" must be an array of tables: [[rollout.rings]] with name, hosts, "
                    + "soak_seconds, max_failures")
            return RolloutConfiguration()
        }
        var rings: [Ring] = []
        var ringOf: [HostName: String] = [:]
        var names: Set<String> = []
        for (_, itemContext, ringTable) in reader.tables(of: array, named: "[[rollout.rings]]") {
            var context = itemContext
            let name = reader.string(ringTable, "name", in: context)
            if let name { context += " (\(quoted(name)))" }
            reader.checkKeys(ringTable, allowed: ringKeys, in: context)
            guard let name else {
                reader.problem("\(context): missing key \"name\", e.g. name = \"canary\"")
                continue
            }
            if !HostName.isValid(name) {
                reader.problem("\(context) key \"name\": \(quoted(name)) must match \(HostName.rule)")
            } else if name == restName {
                reader.problem(
                    "\(context) key \"name\": \(quoted(name)) is the name of the last ring, the hosts in no ring; "
                        + "choose another name")
            } else if !names.insert(name).inserted {
                reader.problem("\(context) key \"name\": another ring is already named \(quoted(name))")
            }
            let patterns = reader.stringArray(ringTable, "hosts", in: context)
            if ringTable["hosts"] == nil || patterns?.isEmpty == true {
                reader.problem("\(context) key \"hosts\": list the ring's hosts (names or patterns such as \"web-*\")")
            }
            var members: [HostName] = []
            for pattern in patterns ?? [] {
                let matched =
                    isPattern(pattern) ? hosts.filter { matches(pattern, $0) } : hosts.filter { $0.value == pattern }
                if matched.isEmpty {
                    reader.problem(
                        "\(context) key \"hosts\": \(quoted(pattern)) "
                            + (isPattern(pattern) ? "matches no host" : "is not a host")
                            + " of [hosts]")
                }
                for host in matched where !members.contains(host) {
                    if let other = ringOf[host] {
                        reader.problem(
                            "\(context) key \"hosts\": host \(host) is already in ring \(quoted(other)); "
                                + "a host belongs to one ring")
                        continue
                    }
                    ringOf[host] = name
                    members.append(host)
                }
            }
            let soak = reader.integer(ringTable, "soak_seconds", in: context, range: soakRange) ?? 0
            let maxFailures = reader.integer(ringTable, "max_failures", in: context, range: maxFailuresRange) ?? 0
            rings.append(
                Ring(
                    name: name, patterns: patterns ?? [], hosts: members.sorted(), soakSeconds: soak,
                    maxFailures: maxFailures))
        }
        let rest = hosts.filter { ringOf[$0] == nil }
        if !rings.isEmpty && !rest.isEmpty {
            rings.append(Ring(name: restName, patterns: [], hosts: rest.sorted()))
        }
        return RolloutConfiguration(rings: rings)
    }
}
