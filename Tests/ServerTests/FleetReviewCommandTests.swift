import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Testing

/// `fleet review`, what fleet-review.timer runs: the real review pipeline on planted uploads, with a real hook
/// observing what it fires, and the metrics file it writes beside what `fleet metrics` prints.
@Suite("fleet review")
struct FleetReviewCommandTests {
    /// A review fixture whose fleet.toml has a hook appending `$FLEET_EVENT $FLEET_HOST <json>` to `log`.
    static func fixture(hosts: [String], log: String) async throws -> ReviewFixture {
        let review = try await ReviewFixture(hosts: hosts, defaults: "poll_interval_seconds = 60")
        let script = review.fixture.directory.path("hook.sh")
        try FileIO.writeAtomically(
            Array("#!/bin/sh\nprintf '%s %s ' \"$FLEET_EVENT\" \"$FLEET_HOST\" >> \(log)\ncat >> \(log)\n".utf8),
            to: script, mode: 0o755)
        let toml = try String(contentsOfFile: review.fixture.repository + "/fleet.toml", encoding: .utf8)
        try review.fixture.write("fleet.toml", toml + "[[hooks]]\ncommand = [\"\(script)\"]\n")
        return review
    }

    static func lines(_ file: String) -> [String] {
        ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// The metrics without the line that says when they were computed.
    static func withoutTimestamp(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("fleet_status_timestamp_seconds ") }.joined(separator: "\n")
    }

    @Test func aHostThatGoesSilentFiresHostSilentWhenOnlyFleetReviewRuns() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let log = directory.path("events.log")
        let review = try await Self.fixture(hosts: ["rv-fine", "rv-quiet"], log: log)
        defer { review.remove() }
        try review.plantReport("rv-fine", 0)
        try review.plantHeartbeat("rv-quiet", applied: 1)
        try review.age("rv-quiet", "heartbeat.json", secondsAgo: 3600)

        let first = try await review.fixture.fleet(["review"])
        #expect(first.exitCode == 0, "\(first.standardError)")
        #expect(
            first.standardOutput
                == "reviewed 2 hosts (1 up to date, 1 silent); ingested 1 report, 1 log, 1 heartbeat; 2 events: "
                + "host-applied rv-fine, host-silent rv-quiet\n", "\(first.standardOutput)")
        var seen = Self.lines(log)
        #expect(seen.count == 2, "\(seen)")
        #expect(seen.contains { $0.hasPrefix("host-silent rv-quiet {") && $0.contains("\"event\":\"host-silent\"") })
        #expect(seen.contains { $0.hasPrefix("host-applied rv-fine {") })

        // Nothing new: nothing fired, however often it runs.
        for _ in 0..<2 {
            let again = try await review.fixture.fleet(["review"])
            #expect(again.exitCode == 0, "\(again.standardError)")
            #expect(again.standardOutput.contains("; 0 events\n"), "\(again.standardOutput)")
        }
        #expect(Self.lines(log) == seen)

        // Heard from again (a fresh heartbeat): back to up to date, one event, reported in --json too.
        try review.plantHeartbeat("rv-quiet", applied: 1)
        let json = try await review.fixture.fleet(["review", "--json"])
        #expect(json.exitCode == 0, "\(json.standardError)")
        struct Output: Decodable {
            var hosts: [String: Int]
            var events: [[String: String]]
            var metricsFile: String?
        }
        let output = try JSONDecoder().decode(Output.self, from: Data(json.standardOutput.utf8))
        #expect(output.events == [["event": "host-applied", "host": "rv-quiet"]])
        #expect(output.hosts["up-to-date"] == 2 && output.hosts["silent"] == 0 && output.hosts["failed"] == 0)
        #expect(output.metricsFile == nil)
        seen = Self.lines(log)
        #expect(seen.count == 3 && seen.last?.hasPrefix("host-applied rv-quiet {") == true, "\(seen)")
    }

    @Test func theMetricsFileIsWhatFleetMetricsPrints() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let review = try await Self.fixture(hosts: ["rv-a", "rv-b", "rv-c"], log: directory.path("events.log"))
        defer { review.remove() }
        try review.plantReport("rv-a", 0)
        try review.plantReport("rv-b", 0, state: .failed, reason: "x")
        let file = directory.path("metrics/fleet.prom")
        try directory.makeDirectory("metrics", mode: 0o755)

        let output = try await review.fixture.fleet(["review", "--metrics-file", file])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.hasSuffix("; metrics in \(file)\n"), "\(output.standardOutput)")
        #expect(try FileStatus.of(file)?.permissions == 0o644)
        #expect(try FileIO.listDirectory(directory.path("metrics")) == ["fleet.prom"], "no temporary file is left")
        let written = try String(contentsOfFile: file, encoding: .utf8)
        let printed = try await review.fixture.fleet(["metrics"])
        #expect(printed.exitCode == 0)
        #expect(Self.withoutTimestamp(written) == Self.withoutTimestamp(printed.standardOutput))
        #expect(written.contains("fleet_host_state{host=\"rv-b\",state=\"failed\"} 1\n"))
        #expect(written.contains("\nfleet_status_timestamp_seconds "))

        // Replaced, not appended to, by the next review.
        let inode = try FileStatus.of(file)?.inode
        #expect(try await review.fixture.fleet(["review", "--metrics-file", file]).exitCode == 0)
        #expect(try FileStatus.of(file)?.inode != inode, "replaced by rename")
        #expect(
            Self.withoutTimestamp(try String(contentsOfFile: file, encoding: .utf8)) == Self.withoutTimestamp(written))
    }

    @Test func aReviewThatCannotBeDoneExitsOneAndSaysWhy() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let review = try await Self.fixture(hosts: ["rv-x"], log: directory.path("events.log"))
        defer { review.remove() }

        // A metrics file whose directory does not exist: the review is done, the file is not, exit 1.
        let missing = directory.path("nosuch/fleet.prom")
        let noDirectory = try await review.fixture.fleet(["review", "--metrics-file", missing])
        #expect(noDirectory.exitCode == 1, "\(noDirectory.standardOutput)\(noDirectory.standardError)")
        #expect(
            noDirectory.standardError.contains("--metrics-file \(missing): cannot write it"),
            "\(noDirectory.standardError)")
        #expect(noDirectory.standardOutput.isEmpty)

        // An empty --metrics-file is a usage error.
        let empty = try await review.fixture.fleet(["review", "--metrics-file", ""])
        #expect(empty.exitCode == 64 && empty.standardError.contains("--metrics-file \"\": must name a file"))

        // state.db that is not a database: exit 1, naming it.
        let database = review.fixture.stateDirectory + "/state.db"
        try FileIO.writeAtomically(Array(String(repeating: "not a database\n", count: 300).utf8), to: database)
        let broken = try await review.fixture.fleet(["review"])
        #expect(broken.exitCode == 1, "\(broken.standardOutput)\(broken.standardError)")
        #expect(broken.standardError.contains(database), "\(broken.standardError)")
        #expect(broken.standardOutput.isEmpty)
    }
}
