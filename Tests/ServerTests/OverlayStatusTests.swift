import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import Testing

/// Host-local overlays in `fleet status`: a host states them in its reports and heartbeats; a host running them
/// is up to date on its base generation and marked; `--json` lists them; hostile lists refuse the file.
@Suite("overlays in fleet status")
struct OverlayStatusTests {
    static let digestA = String(repeating: "a1", count: 32)
    static let digestB = String(repeating: "0f", count: 32)

    @Test func aHostRunningOverlaysIsUpToDateAndMarked() async throws {
        let review = try await ReviewFixture(hosts: ["os-plain", "os-lab"])
        defer { review.remove() }
        try review.plantReport("os-plain", 0)
        try review.plantReport("os-lab", 0) {
            $0.overlays = [.init(name: "docker", digest: Self.digestA), .init(name: "printer", digest: Self.digestB)]
        }

        let hosts = try await review.statusJSON()
        let byName = Dictionary(uniqueKeysWithValues: hosts.map { ($0.host, $0) })
        #expect(byName["os-lab"]?.state == .upToDate && byName["os-plain"]?.state == .upToDate, "\(hosts)")
        #expect(byName["os-lab"]?.overlays?.map(\.name) == ["docker", "printer"])
        #expect(byName["os-lab"]?.overlays?.first?.digest == Self.digestA)
        #expect(byName["os-plain"]?.overlays == nil)
        let json = try await review.fixture.fleet(["status", "--json", "os-plain"])
        #expect(!json.standardOutput.contains("overlays"), "absent without overlays")

        let table = try await review.fixture.fleet(["status"])
        #expect(table.standardOutput.contains("up to date (+2 overlays)"), "\(table.standardOutput)")
        let plainLine = table.standardOutput.split(separator: "\n").first { $0.hasPrefix("os-plain") }
        #expect(plainLine?.contains("overlay") == false)

        // A heartbeat that states them, newer than the report, is what counts; one that states none clears them.
        var beat = Heartbeat(
            host: "os-lab", at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1,
            failedGeneration: nil, lastResult: .unchanged, reason: nil, rebootNeeded: false)
        beat.overlays = [.init(name: "docker", digest: Self.digestA)]
        try FileIO.writeAtomically(beat.encoded(), to: review.logs("os-lab") + "/heartbeat.json", mode: 0o640)
        var lab = try await review.statusJSON(["os-lab"])
        #expect(lab.first?.overlays?.map(\.name) == ["docker"] && lab.first?.state == .upToDate)
        try review.plantHeartbeat("os-lab", applied: 1)
        lab = try await review.statusJSON(["os-lab"])
        #expect(lab.first?.overlays == nil && lab.first?.state == .upToDate)
    }

    /// Overlay names and digests are host-written: a name that is no host name (escapes, newlines, slashes), a
    /// digest that is not lowercase SHA-256 hex, or a list past the cap refuse the file, and nothing of it shows.
    @Test func hostileOverlayListsAreRefused() async throws {
        let review = try await ReviewFixture(hosts: ["os-hostile"])
        defer { review.remove() }
        let many = (0...OverlayListLimit.value).map { RunReport.Overlay(name: "o\($0)", digest: Self.digestA) }
        let hostile: [[RunReport.Overlay]] = [
            [.init(name: "ok\u{1b}]0;pwned\u{07}", digest: Self.digestA)],
            [.init(name: "a\nos-hostile: up to date", digest: Self.digestA)],
            [.init(name: "../etc", digest: Self.digestA)],
            [.init(name: "", digest: Self.digestA)],
            [.init(name: String(repeating: "a", count: 100_000), digest: Self.digestA)],
            [.init(name: "docker", digest: Self.digestA.uppercased())],
            [.init(name: "docker", digest: "not-a-digest")],
            [.init(name: "docker", digest: Self.digestA + "00")],
            many,
        ]
        for (index, overlays) in hostile.enumerated() {
            try review.plantReport("os-hostile", index, withLog: false) { $0.overlays = overlays }
        }
        var beat = Heartbeat(
            host: "os-hostile", at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1,
            failedGeneration: nil, lastResult: .unchanged, reason: nil, rebootNeeded: false)
        beat.overlays = [.init(name: "x\u{1b}[2J", digest: Self.digestA)]
        try FileIO.writeAtomically(beat.encoded(), to: review.logs("os-hostile") + "/heartbeat.json", mode: 0o640)

        let snapshot = try await review.refresh()
        let status = try review.status(snapshot, "os-hostile")
        #expect(snapshot.ingest.reports == 0 && snapshot.ingest.heartbeats == 0, "\(snapshot.ingest)")
        #expect(snapshot.ingest.refused == hostile.count + 1, "\(snapshot.ingest)")
        #expect(status.state == .neverSeen && status.overlays == nil)
        #expect(status.warnings.allSatisfy { $0.contains("overlay") }, "\(status.warnings)")
        #expect(status.warnings.allSatisfy { !$0.contains("\u{1b}") && !$0.contains("\n") && $0.count < 400 })

        let output = try await review.fixture.fleet(["status"])
        #expect(!output.standardOutput.contains("\u{1b}") && !output.standardOutput.contains("pwned\u{07}"))
    }
}

/// Which server served a run and which were passed over (client.toml `[[servers]]`) are the host's word: a
/// hostile name or reason refuses the upload, and nothing of it reaches `fleet status`.
@Suite struct ServerListIngestTests {
    @Test func hostileServerNamesAndReasonsAreRefused() async throws {
        let review = try await ReviewFixture(hosts: ["sl-hostile"])
        defer { review.remove() }
        let skip = { (name: String, reason: String) in [RunReport.SkippedServer(name: name, reason: reason)] }
        let hostile: [(String?, [RunReport.SkippedServer]?)] = [
            ("mirror\u{1b}]0;pwned\u{07}", nil),
            ("a\nsl-hostile: up to date", nil),
            (String(repeating: "m", count: 100_000), nil),
            ("primary", skip("../etc", "stale")),
            ("primary", skip("mirror-a", "stale\n\u{1b}[2J")),
            ("primary", skip("mirror-a", String(repeating: "r", count: 201))),
            ("primary", (0...16).map { RunReport.SkippedServer(name: "m\($0)", reason: "down") }),
        ]
        for (index, (server, skipped)) in hostile.enumerated() {
            try review.plantReport("sl-hostile", index, withLog: false) {
                $0.server = server
                $0.skippedServers = skipped
            }
        }
        var beat = Heartbeat(
            host: "sl-hostile", at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1,
            failedGeneration: nil, lastResult: .unchanged, reason: nil, rebootNeeded: false)
        beat.server = "x\u{1b}[2J"
        try FileIO.writeAtomically(beat.encoded(), to: review.logs("sl-hostile") + "/heartbeat.json", mode: 0o640)

        let snapshot = try await review.refresh()
        let status = try review.status(snapshot, "sl-hostile")
        #expect(snapshot.ingest.reports == 0 && snapshot.ingest.heartbeats == 0, "\(snapshot.ingest)")
        #expect(snapshot.ingest.refused == hostile.count + 1, "\(snapshot.ingest)")
        #expect(status.state == .neverSeen)
        #expect(status.warnings.allSatisfy { !$0.contains("\u{1b}") && !$0.contains("\n") && $0.count < 400 })
        let output = try await review.fixture.fleet(["status"])
        #expect(!output.standardOutput.contains("\u{1b}") && !output.standardOutput.contains("pwned\u{07}"))
    }

    @Test func anHonestServerListIsAccepted() async throws {
        let review = try await ReviewFixture(hosts: ["sl-honest"])
        defer { review.remove() }
        var beat = Heartbeat(
            host: "sl-honest", at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1,
            failedGeneration: nil, lastResult: .unchanged, reason: nil, rebootNeeded: false)
        beat.server = "mirror-a"
        beat.skippedServers = [.init(name: "primary", reason: "could not connect: Connection refused")]
        try FileIO.writeAtomically(beat.encoded(), to: review.logs("sl-honest") + "/heartbeat.json", mode: 0o640)
        let snapshot = try await review.refresh()
        #expect(snapshot.ingest.heartbeats == 1 && snapshot.ingest.refused == 0, "\(snapshot.ingest)")
    }
}

/// The cap ``FleetReview`` puts on a stated list (internal there): fleet-client states far fewer.
enum OverlayListLimit {
    static let value = 64
}
