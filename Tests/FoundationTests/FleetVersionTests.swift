import FleetProtocol
import Testing

/// ``FleetVersion``: the strict parse that makes a host-written version safe to store and print, its order, and
/// what "a major version behind" means.
@Suite("fleet version")
struct FleetVersionTests {
    @Test func theCurrentVersionRoundTrips() {
        #expect(FleetVersion(FleetVersion.current.description) == FleetVersion.current)
        #expect(
            FleetVersion.versionLine(program: "fleet", commit: "unknown")
                == "fleet \(FleetVersion.current) (commit unknown)"
        )
    }

    @Test func versionsFleetClientWritesParse() {
        #expect(FleetVersion("0.5.0") == FleetVersion(major: 0, minor: 5, patch: 0))
        #expect(FleetVersion("12.0.3-rc.1") == FleetVersion(major: 12, minor: 0, patch: 3, prerelease: "rc.1"))
        #expect(FleetVersion("1.2.3-beta-2")?.prerelease == "beta-2")
    }

    /// Hostile or merely wrong strings: none parses, so none reaches state.db or a terminal.
    @Test(arguments: [
        "", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "-1.2.3", "+1.2.3", "1.2.3-", "1.2.3+build", " 1.2.3", "1.2.3 ",
        "1.2.3\n", "1.2.3-\u{1b}[2J", "1.2.3-\u{202e}", "１.2.3", "1.2.3-ä", "1234567890.0.0", "1..3", "a.b.c",
        "0.5.0-" + String(repeating: "x", count: 100),
    ])
    func malformedVersionsAreRefused(_ text: String) {
        #expect(FleetVersion(text) == nil, "\(text.debugDescription.prefix(80))")
    }

    /// Huge strings are refused by their length before any parsing.
    @Test func hugeVersionsAreRefused() {
        #expect(FleetVersion(String(repeating: "9", count: 100_000)) == nil)
        #expect(FleetVersion("1.2.3-" + String(repeating: "a", count: FleetVersion.longestText)) == nil)
        #expect(FleetVersion("1.2.3-" + String(repeating: "a", count: FleetVersion.longestText - 6)) != nil)
    }

    @Test func versionsOrderLikeSemanticVersions() throws {
        let ordered = ["0.4.9", "0.5.0-rc.1", "0.5.0", "0.5.1", "0.10.0", "1.0.0-alpha", "1.0.0", "2.0.0"]
        let versions = try ordered.map { try #require(FleetVersion($0)) }
        #expect(versions == versions.sorted())
        #expect(versions.shuffled().sorted() == versions)
    }

    /// In 0.x a minor version is a major one (semver, as Cargo reads it); from 1.0 only the major counts, and a
    /// newer client is never behind.
    @Test func aMajorVersionBehindFollowsSemverFor0x() throws {
        func behind(_ client: String, _ server: String) throws -> Bool {
            try #require(FleetVersion(client)).isMajorVersionBehind(try #require(FleetVersion(server)))
        }
        #expect(try behind("0.4.9", "0.5.0"))
        #expect(try !behind("0.5.0", "0.5.7"))
        #expect(try !behind("0.5.3", "0.5.0"))
        #expect(try behind("0.9.0", "1.0.0"))
        #expect(try !behind("1.0.0", "1.9.0"))
        #expect(try behind("1.9.0", "2.0.0"))
        #expect(try !behind("3.0.0", "2.0.0"))
    }
}
