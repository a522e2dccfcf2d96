import CommandRunner
import FleetProtocol
import FleetTestSupport
import Foundation
import ServerStore
import Testing

/// The build gate remembers: a tree that did not build is not built (nor announced) again by every publish, and
/// `fleet status` shows the host as *build failed* until its configuration builds or is the published one again.
/// Real Nix builds of toy systems; host names of their own.
@Suite("the build gate remembers what did not build", .serialized)
struct BuildMemoryTests {
    @Test func aTreeThatDidNotBuildIsNotBuiltAgainUntilItChangesAndStatusShowsIt() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let received = directory.path("events.jsonl")
        let fixture = try ClientBuildTests.toyFleet(
            ["memsteady", "membroken"],
            extraToml: """
                [defaults]
                build = true

                [[hooks]]
                command = ["/bin/sh", "-c", "cat >> \(received)"]
                events = ["build-failed"]
                """)
        defer { fixture.remove() }
        var (status, rows) = try await ClientBuildTests.publishJSON(fixture)
        #expect(status == 0 && rows.allSatisfy { $0["status"] as? String == "published" }, "\(rows)")
        let published = try String(
            contentsOfFile: fixture.repository + "/hosts/membroken/configuration.nix", encoding: .utf8)

        // It breaks: built once, failed once, announced once.
        try fixture.write(
            "hosts/membroken/configuration.nix", "{ motd = [ (builtins.throw \"membroken does not evaluate\") ]; }\n")
        (status, rows) = try await ClientBuildTests.publishJSON(fixture)
        #expect(status == 1)
        #expect(row("membroken", rows)["status"] as? String == "build-failed", "\(rows)")
        let store = try StateStoreOpener.open(fixture)
        #expect(try builds(of: "membroken", store) == ["built", "build-failed"])
        #expect(try hookEvents(received) == ["build-failed membroken"])

        // Published again with nothing changed (a publish timer): not built, not announced, still a failure.
        for _ in 0..<2 {
            (status, rows) = try await ClientBuildTests.publishJSON(fixture)
            #expect(status == 1, "the configuration still does not build: the publish says so")
            let broken = row("membroken", rows)
            #expect(broken["status"] as? String == "still-failing" && broken["generation"] as? Int == 1, "\(broken)")
            let reason = broken["reason"] as? String ?? ""
            #expect(
                reason.contains("membroken does not evaluate") && reason.contains("fleet publish --build"), "\(reason)")
            #expect(row("memsteady", rows)["status"] as? String == "unchanged")
        }
        #expect(try builds(of: "membroken", store).count == 2, "the same tree was not built again")
        #expect(try hookEvents(received) == ["build-failed membroken"], "announced once")
        #expect(try fixture.verifiedManifest("membroken").generation == 1)

        // `fleet status` shows it, with the reason, distinct from a failure on the host; the other host is fine.
        let statusRows = try await statusJSON(fixture)
        let broken = row("membroken", statusRows)
        #expect(broken["state"] as? String == "build-failed", "\(broken)")
        #expect((broken["reason"] as? String)?.contains("did not build on the server") == true, "\(broken)")
        let failure = try #require(broken["buildFailure"] as? [String: Any], "\(broken)")
        #expect((failure["reason"] as? String)?.contains("membroken does not evaluate") == true)
        #expect(row("memsteady", statusRows)["state"] as? String == "never-seen")
        #expect(row("memsteady", statusRows)["buildFailure"] == nil)
        let table = try await fixture.fleet(["status"]).standardOutput
        #expect(table.contains("build failed"), "\(table)")

        // `--build` tries it anyway (the server may have been the problem).
        (status, rows) = try await ClientBuildTests.publishJSON(fixture, ["--build"])
        #expect(row("membroken", rows)["status"] as? String == "build-failed")
        #expect(try builds(of: "membroken", store).count == 3)

        // Another broken tree is another failure: built and announced.
        try fixture.write(
            "hosts/membroken/configuration.nix", "{ motd = [ (builtins.throw \"membroken, broken again\") ]; }\n")
        (status, rows) = try await ClientBuildTests.publishJSON(fixture)
        #expect(row("membroken", rows)["status"] as? String == "build-failed")
        #expect(try builds(of: "membroken", store).count == 4)
        #expect(try hookEvents(received).count == 3)

        // Back to the published configuration: nothing to build, and nothing failed any more.
        try fixture.write("hosts/membroken/configuration.nix", published)
        (status, rows) = try await ClientBuildTests.publishJSON(fixture)
        #expect(status == 0 && row("membroken", rows)["status"] as? String == "unchanged", "\(rows)")
        #expect(try store.buildFailures().isEmpty)
        #expect(row("membroken", try await statusJSON(fixture))["state"] as? String == "never-seen")

        // A change that builds is published, and the failure before it is forgotten.
        try fixture.write(
            "hosts/membroken/configuration.nix", "{ motd = [ (builtins.throw \"membroken, once more\") ]; }\n")
        (status, rows) = try await ClientBuildTests.publishJSON(fixture)
        #expect(try store.buildFailures().keys.sorted() == ["membroken"])
        try fixture.write("hosts/membroken/configuration.nix", "{ motd = [ \"membroken, fixed\" ]; }\n")
        (status, rows) = try await ClientBuildTests.publishJSON(fixture)
        #expect(status == 0 && row("membroken", rows)["status"] as? String == "published", "\(rows)")
        #expect(try store.buildFailures().isEmpty)
        #expect(try fixture.verifiedManifest("membroken").generation == 2)
    }

    @Test func aDryRunSaysAKnownFailureWouldFailWithoutBuilding() async throws {
        let fixture = try ClientBuildTests.toyFleet(["memdry"], extraToml: "[defaults]\nbuild = true")
        defer { fixture.remove() }
        #expect(try await ClientBuildTests.publishJSON(fixture).0 == 0)
        try fixture.write("hosts/memdry/configuration.nix", "{ motd = [ (builtins.throw \"memdry is broken\") ]; }\n")
        #expect(try await ClientBuildTests.publishJSON(fixture).0 == 1)
        let store = try StateStoreOpener.open(fixture)
        let before = try builds(of: "memdry", store).count
        let (status, rows) = try await ClientBuildTests.publishJSON(fixture, ["--dry-run"])
        #expect(status == 1)
        let dry = row("memdry", rows)
        #expect(dry["status"] as? String == "would-fail", "\(dry)")
        #expect((dry["reason"] as? String)?.contains("memdry is broken") == true, "\(dry)")
        #expect(try builds(of: "memdry", store).count == before, "a dry run builds nothing it knows fails")
    }

    private func row(_ host: String, _ rows: [[String: Any]]) -> [String: Any] {
        rows.first { $0["host"] as? String == host } ?? [:]
    }

    /// The host's build events, oldest first: `built`, `build-reused`, `build-failed`.
    private func builds(of host: String, _ store: StateStore) throws -> [String] {
        try store.events(host: try HostName(host)).map(\.kind).filter {
            ["built", "build-reused", "build-failed"].contains($0)
        }
    }

    private func hookEvents(_ file: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: file) else { return [] }
        return try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map { line in
            let event = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
            return "\(event["event"] as? String ?? "?") \(event["host"] as? String ?? "?")"
        }
    }

    private func statusJSON(_ fixture: FleetFixture) async throws -> [[String: Any]] {
        let output = try await fixture.fleet(["status", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8))
        if let rows = object as? [[String: Any]] { return rows }
        return (object as? [String: Any])?["hosts"] as? [[String: Any]] ?? []
    }
}
