import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import Testing

/// The client's version: each report and heartbeat states it, `fleet status` shows it and warns about a client a
/// major version behind, old clients that do not state it are still heard, hostile strings are refused; and
/// `--version` of both executables names the version and the commit they were built from.
@Suite("client version")
struct ClientVersionTests {
    @Test func aReportsClientVersionIsShownAndAnOlderSeriesIsWarnedAbout() async throws {
        let review = try await ReviewFixture(hosts: ["cv-current", "cv-old", "cv-newer"])
        defer { review.remove() }
        try review.plantReport("cv-current", 0)
        let behind = FleetVersion(major: 0, minor: FleetVersion.current.minor - 1, patch: 9)
        try review.plantReport("cv-old", 0) { $0.clientVersion = behind.description }
        try review.plantReport("cv-newer", 0) { $0.clientVersion = "99.0.0" }

        let hosts = try await review.statusJSON()
        let byName = Dictionary(uniqueKeysWithValues: hosts.map { ($0.host, $0) })
        #expect(byName["cv-current"]?.clientVersion == FleetVersion.current.description)
        #expect(byName["cv-current"]?.clientBehind == false)
        #expect(byName["cv-old"]?.clientVersion == behind.description && byName["cv-old"]?.clientBehind == true)
        #expect(byName["cv-newer"]?.clientVersion == "99.0.0" && byName["cv-newer"]?.clientBehind == false)
        #expect(hosts.allSatisfy { $0.state == .upToDate && $0.warningCount == 0 }, "\(hosts)")

        // The table warns about the old one, and only it.
        let output = try await review.fixture.fleet(["status"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("clients a major version behind:"), "\(output.standardOutput)")
        #expect(
            output.standardOutput.contains(
                "cv-old: fleet-client \(behind) is a major version behind this server (fleet \(FleetVersion.current))"))
        #expect(!output.standardOutput.contains("cv-newer: fleet-client"))

        // The newest word counts: a heartbeat of the upgraded client clears the warning.
        try review.plantHeartbeat("cv-old", applied: 1)
        let after = try await review.statusJSON(["cv-old"])
        #expect(after.first?.clientVersion == FleetVersion.current.description && after.first?.clientBehind == false)
    }

    /// Clients before 0.5.0 wrote no `clientVersion`: their reports and heartbeats are ingested as before, and
    /// the version shows as unknown (absent in JSON, never a warning).
    @Test func anOldClientsUploadsWithoutAVersionAreAcceptedAsUnknown() async throws {
        let review = try await ReviewFixture(hosts: ["cv-legacy"])
        defer { review.remove() }
        try review.plantReport("cv-legacy", 0) { $0.clientVersion = nil }
        let bytes = try FileIO.read(review.logs("cv-legacy") + "/report-\(ReviewFixture.stem(0))-g1.json")
        #expect(!String(decoding: bytes, as: UTF8.self).contains("clientVersion"))

        var snapshot = try await review.refresh()
        var status = try review.status(snapshot, "cv-legacy")
        #expect(snapshot.ingest.reports == 1 && snapshot.ingest.refused == 0)
        #expect(status.state == .upToDate && status.clientVersion == nil && !status.clientBehind)

        var beat = Heartbeat(
            host: "cv-legacy", at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1,
            failedGeneration: nil, lastResult: .unchanged, reason: nil, rebootNeeded: false)
        beat.clientVersion = nil
        try FileIO.writeAtomically(beat.encoded(), to: review.logs("cv-legacy") + "/heartbeat.json", mode: 0o640)
        snapshot = try await review.refresh()
        status = try review.status(snapshot, "cv-legacy")
        #expect(snapshot.ingest.heartbeats == 1 && status.clientVersion == nil && status.warningCount == 0)

        let output = try await review.fixture.fleet(["status", "--json"])
        #expect(!output.standardOutput.contains("clientVersion"), "unknown is absent, not a made-up value")
    }

    /// A version string is host-written: escape sequences, newlines, megabytes or mere nonsense refuse the file
    /// it is in (as any other impossible field does), and the warning shows it quoted and cut.
    @Test func hostileVersionStringsAreRefused() async throws {
        let review = try await ReviewFixture(hosts: ["cv-hostile"])
        defer { review.remove() }
        let hostile = [
            "0.5.0\u{1b}]0;pwned\u{07}", "0.5.0\nfleet-client 9.9.9 is fine", String(repeating: "9", count: 200_000),
            "", "latest", "0.5.0-\u{202e}evil", "0.5",
        ]
        for (index, text) in hostile.enumerated() {
            try review.plantReport("cv-hostile", index, withLog: false) { $0.clientVersion = text }
        }
        var beat = Heartbeat(
            host: "cv-hostile", at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1,
            failedGeneration: nil, lastResult: .unchanged, reason: nil, rebootNeeded: false)
        beat.clientVersion = "\u{1b}[2J"
        try FileIO.writeAtomically(beat.encoded(), to: review.logs("cv-hostile") + "/heartbeat.json", mode: 0o640)

        let snapshot = try await review.refresh()
        let status = try review.status(snapshot, "cv-hostile")
        #expect(snapshot.ingest.reports == 0 && snapshot.ingest.heartbeats == 0)
        #expect(snapshot.ingest.refused == hostile.count + 1, "\(snapshot.ingest)")
        #expect(status.state == .neverSeen && status.clientVersion == nil)
        #expect(status.warningCount == hostile.count + 1, "\(status.warnings)")
        #expect(status.warnings.allSatisfy { $0.contains("is not a fleet version") }, "\(status.warnings)")
        #expect(status.warnings.allSatisfy { !$0.contains("\u{1b}") && !$0.contains("\n") && $0.count < 400 })
        #expect(status.warnings.contains { $0.contains("(200000 bytes)") })

        // Nothing of it reaches the terminal raw either.
        let output = try await review.fixture.fleet(["status"])
        #expect(!output.standardOutput.contains("\u{1b}") && !output.standardOutput.contains("pwned\u{07}"))
    }

    /// `--version` names FleetVersion.current and the commit the binaries were built from: this checkout's HEAD
    /// (SourceCommitPlugin), else FLEET_SOURCE_COMMIT, else "unknown".
    @Test func bothExecutablesPrintTheirVersionAndSourceCommit() throws {
        let packageRoot = FileIO.split(FileIO.split(FileIO.split(#filePath).directory).directory).directory
        let git = try? TestCommand.run("/usr/bin/git", ["-C", packageRoot, "rev-parse", "--show-toplevel", "HEAD"])
        let lines = git.map { $0.standardOutput.split(separator: "\n").map(String.init) } ?? []
        let expected: String
        if git?.status == 0, lines.count == 2, lines[0] == packageRoot {
            expected = lines[1]
        } else {
            expected = ProcessInfo.processInfo.environment["FLEET_SOURCE_COMMIT"] ?? "unknown"
        }
        for program in ["fleet", "fleet-client"] {
            let output = try TestCommand.run(FleetFixture.executable(program), ["--version"])
            #expect(output.status == 0, "\(output.standardError)")
            #expect(
                output.standardOutput == "\(program) \(FleetVersion.current) (commit \(expected))\n",
                "rebuild after committing: the binary names the commit it was built from")
        }
    }
}
