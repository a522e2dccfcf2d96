import FleetFiles
import FleetProtocol
import FleetTestSupport
import Inventory
import Testing

/// `[[rollout.rings]]` of fleet.toml: the rings, their hosts by name or pattern, the last ring of the hosts in
/// none, and every hostile value refused with fleet.toml and the ring named.
@Suite("fleet.toml rollout rings")
struct RolloutConfigurationTests {
    static let hosts = ["canary-1", "web-01", "web-02", "db-01", "mail"]

    func parse(_ toml: String) throws -> FleetConfiguration {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        var text = toml + "\n"
        for host in Self.hosts {
            try FileIO.createDirectories(directory.path("hosts/\(host)"))
            text += "[hosts.\(host)]\n"
        }
        return try FleetConfiguration.parse(text, file: directory.path("fleet.toml"), repository: directory.path)
    }

    func problems(_ toml: String) throws -> [String] {
        do {
            _ = try parse(toml)
            Issue.record("expected fleet.toml to be refused:\n\(toml)")
            return []
        } catch let error as InventoryError {
            return error.problems
        }
    }

    @Test func ringsTakeNamesAndPatternsAndTheRestFormTheLastRing() throws {
        let configuration = try parse(
            """
            [[rollout.rings]]
            name = "canary"
            hosts = ["canary-1"]
            soak_seconds = 600

            [[rollout.rings]]
            name = "web"
            hosts = ["web-*"]
            max_failures = 1
            """)
        let rings = configuration.rollout.rings
        #expect(rings.map(\.name) == ["canary", "web", RolloutConfiguration.restName])
        #expect(rings[0].hosts.map(\.value) == ["canary-1"] && rings[0].soakSeconds == 600 && rings[0].maxFailures == 0)
        #expect(rings[1].hosts.map(\.value) == ["web-01", "web-02"] && rings[1].maxFailures == 1)
        #expect(rings[2].hosts.map(\.value) == ["db-01", "mail"] && rings[2].soakSeconds == 0)
        #expect(configuration.rollout.ringIndex(of: try HostName("mail")) == 2)
        #expect(configuration.rollout.isEnabled)
    }

    @Test func withoutRingsThereIsNoRollout() throws {
        #expect(!(try parse("")).rollout.isEnabled)
        #expect(!(try parse("[rollout]")).rollout.isEnabled)
    }

    @Test func ringsThatNameEveryHostHaveNoRestRing() throws {
        let configuration = try parse(
            """
            [[rollout.rings]]
            name = "first"
            hosts = ["canary-1", "mail"]
            [[rollout.rings]]
            name = "second"
            hosts = ["*-0?"]
            """)
        #expect(configuration.rollout.rings.map(\.name) == ["first", "second"])
    }

    @Test(arguments: ["Canary", "-canary", "can ary", "canary/1", "../x", "", String(repeating: "a", count: 64)])
    func ringNamesOutsideTheHostNameRuleAreRefused(name: String) throws {
        let found = try problems("[[rollout.rings]]\nname = \(quoted(name))\nhosts = [\"mail\"]")
        #expect(found.count == 1, "\(found)")
        #expect(found.first?.contains("fleet.toml") == true, "\(found)")
        #expect(found.first?.contains("[[rollout.rings]] #1") == true, "\(found)")
        #expect(found.first?.contains(HostName.rule) == true, "\(found)")
    }

    @Test func duplicateRingNamesAndTheRestNameAreRefused() throws {
        let found = try problems(
            """
            [[rollout.rings]]
            name = "wave"
            hosts = ["canary-1"]
            [[rollout.rings]]
            name = "wave"
            hosts = ["mail"]
            [[rollout.rings]]
            name = "rest"
            hosts = ["db-01"]
            """)
        #expect(found.count == 2, "\(found)")
        #expect(found.contains { $0.contains("#2 (\"wave\")") && $0.contains("already named \"wave\"") }, "\(found)")
        #expect(found.contains { $0.contains("#3 (\"rest\")") && $0.contains("hosts in no ring") }, "\(found)")
    }

    @Test func aHostInTwoRingsIsRefused() throws {
        let found = try problems(
            """
            [[rollout.rings]]
            name = "canary"
            hosts = ["web-01"]
            [[rollout.rings]]
            name = "web"
            hosts = ["web-*"]
            """)
        #expect(found.count == 1, "\(found)")
        #expect(
            found.first?.contains("(\"web\") key \"hosts\": host web-01 is already in ring \"canary\"") == true,
            "\(found)")
    }

    @Test func negativeOrHugeSoakAndMaxFailuresAreRefused() throws {
        let found = try problems(
            """
            [[rollout.rings]]
            name = "canary"
            hosts = ["mail"]
            soak_seconds = -1
            max_failures = -2
            [[rollout.rings]]
            name = "wave"
            hosts = ["db-01"]
            soak_seconds = "an hour"
            """)
        #expect(found.count == 3, "\(found)")
        #expect(found.contains { $0.contains("(\"canary\") key \"soak_seconds\": expected an integer in 0...") })
        #expect(found.contains { $0.contains("(\"canary\") key \"max_failures\": expected an integer in 0...") })
        #expect(found.contains { $0.contains("(\"wave\") key \"soak_seconds\"") })
    }

    @Test func unknownKeysMissingNamesAndUnknownHostsAreRefused() throws {
        let found = try problems(
            """
            [rollout]
            strategy = "yolo"
            [[rollout.rings]]
            name = "canary"
            hosts = ["mail", "nosuchhost", "zz-*"]
            soak = 5
            [[rollout.rings]]
            hosts = ["db-01"]
            [[rollout.rings]]
            name = "empty"
            hosts = []
            """)
        #expect(found.allSatisfy { $0.contains("fleet.toml") }, "\(found)")
        #expect(found.contains { $0.contains("[rollout]: unknown key \"strategy\"") }, "\(found)")
        #expect(found.contains { $0.contains("(\"canary\"): unknown key \"soak\"") }, "\(found)")
        #expect(found.contains { $0.contains("\"nosuchhost\" is not a host") }, "\(found)")
        #expect(found.contains { $0.contains("\"zz-*\" matches no host") }, "\(found)")
        #expect(found.contains { $0.contains("#2: missing key \"name\"") }, "\(found)")
        #expect(found.contains { $0.contains("(\"empty\") key \"hosts\": list the ring's hosts") }, "\(found)")
        #expect(found.count == 6, "\(found)")
    }

    @Test func ringsMustBeAnArrayOfTables() throws {
        let found = try problems("[rollout]\nrings = \"canary\"")
        #expect(found.count == 1 && found[0].contains("[[rollout.rings]]"), "\(found)")
    }
}
