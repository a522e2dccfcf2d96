import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import Testing

extension FleetStatusTests {
    /// Reports and heartbeats say which server served the run and which it passed over (client.toml's
    /// `[[servers]]`): `fleet status` shows a mirror that served (not this server), the servers passed over with
    /// their reasons under the table, and both in `--json`.
    @Test func theServerThatServedEachHostAndThoseItPassedOverAreShown() async throws {
        let review = try await ReviewFixture(hosts: ["beat", "direct", "failover", "old"])
        defer { review.remove() }
        try review.plantReport("failover", 0) { report in
            report.server = "mirror-a"
            report.skippedServers = [.init(name: "primary", reason: "unreachable: connection refused")]
        }
        try review.plantReport("direct", 0) { $0.server = "primary" }
        // A client before mirrors states no server.
        try review.plantReport("old", 0)
        var beat = Heartbeat(
            host: "beat", at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1, failedGeneration: nil,
            lastResult: .unchanged, reason: nil, rebootNeeded: false)
        beat.server = "mirror-b"
        beat.skippedServers = [
            .init(name: "primary", reason: "stale manifest: expired at 2026-11-21T00:00:00Z"),
            .init(name: "mirror-a", reason: "wrong host key, not trusted: SHA256:abc"),
        ]
        try FileIO.writeAtomically(beat.encoded(), to: review.logs("beat") + "/heartbeat.json", mode: 0o640)

        let rows = Dictionary(uniqueKeysWithValues: try await review.statusJSON().map { ($0.host, $0) })
        #expect(rows["failover"]?.server == "mirror-a")
        #expect(
            rows["failover"]?.skippedServers == [.init(name: "primary", reason: "unreachable: connection refused")])
        #expect(rows["direct"]?.server == "primary" && rows["direct"]?.skippedServers == nil)
        #expect(rows["old"]?.server == nil && rows["old"]?.skippedServers == nil)
        #expect(
            rows["beat"]?.server == "mirror-b" && rows["beat"]?.skippedServers?.map(\.name) == ["primary", "mirror-a"])
        #expect(rows.values.allSatisfy { $0.state == .upToDate && $0.lastSeenVia == nil })
        let json = try await review.fixture.fleet(["status", "--json", "failover"])
        #expect(json.standardOutput.contains("\"server\" : \"mirror-a\""), "\(json.standardOutput)")
        #expect(json.standardOutput.contains("\"skippedServers\" : ["), "\(json.standardOutput)")

        let table = try await review.fixture.fleet(["status"])
        #expect(table.exitCode == 0, "\(table.standardError)")
        let lines = table.standardOutput.split(separator: "\n").map(String.init)
        func line(_ host: String) -> String { lines.first { $0.hasPrefix(host + " ") } ?? "" }
        #expect(line("failover").contains("(served by mirror-a)"), "\(table.standardOutput)")
        #expect(line("beat").contains("(served by mirror-b)"), "\(table.standardOutput)")
        for host in ["direct", "old"] {
            #expect(!line(host).contains("served by") && !line(host).contains("via"), "\(table.standardOutput)")
        }
        let notes = lines.drop { !$0.hasPrefix("servers passed over") }
        #expect(notes.first?.hasPrefix("servers passed over by the newest run") == true, "\(table.standardOutput)")
        #expect(notes.contains("  failover: primary: unreachable: connection refused"), "\(table.standardOutput)")
        #expect(
            notes.contains(
                "  beat: primary: stale manifest: expired at 2026-11-21T00:00:00Z; mirror-a: wrong host key, not "
                    + "trusted: SHA256:abc"), "\(table.standardOutput)")
        #expect(!notes.contains { $0.hasPrefix("  direct") || $0.hasPrefix("  old") })
    }
}
