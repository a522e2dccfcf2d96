import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import HostAgent
import Publishing
import ServerStore
import Testing

/// One source of truth for how often a host polls: fleet.toml's `poll_interval_seconds` for the host goes into
/// its client.toml (`fleet client-config`), the timer is set from client.toml (`fleet-client install-units`, the
/// NixOS module through nixos/shared.nix), the host reports it, and `fleet status` judges silence by it.
@Suite("poll interval: fleet.toml, client.toml, the timer, the report, fleet status")
struct PollIntervalTests {
    /// A fleet whose default host polls every 300 s, `slow` every hour and `bad` every 10 s (fine for the
    /// server's own judgement, too often for a host's timer).
    static func fleet() throws -> FleetFixture {
        let fixture = try FleetFixture(
            hosts: ["fast", "slow", "bad"],
            extraToml: "[defaults]\npoll_interval_seconds = 300\n",
            serverToml: "host_key = \"\(KeyPair.publicLine(forHost: "server"))\"")
        let toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        try fixture.write(
            "fleet.toml",
            toml.replacingOccurrences(of: "[hosts.slow]\n", with: "[hosts.slow]\npoll_interval_seconds = 3600\n")
                .replacingOccurrences(of: "[hosts.bad]\n", with: "[hosts.bad]\npoll_interval_seconds = 10\n"))
        return fixture
    }

    /// The timer's OnUnitActiveSec= as `fleet-client install-units` writes it for `config`.
    static func installedInterval(config: String, into directory: String) async throws -> String {
        let output = try await Command.run(
            FleetFixture.executable("fleet-client"),
            ["install-units", "--directory", directory, "--config", config, "--dry-run", "--binary", "/bin/true"])
        guard output.exitCode == 0 else { throw TestSupportError("install-units: \(output.standardError)") }
        let line = output.standardOutput.split(separator: "\n").first { $0.hasPrefix("OnUnitActiveSec=") }
        return String(line?.dropFirst("OnUnitActiveSec=".count) ?? "")
    }

    /// What nixos/client.nix sets OnUnitActiveSec= to for a `configFile` (the same shared.nix functions it
    /// uses; nixpkgs itself cannot be fetched here).
    static func moduleInterval(config: String) async throws -> String {
        let expression = """
            let shared = import \(NixModulesTests.repository)/nixos/shared.nix;
            in shared.timeSpan (shared.pollIntervalSeconds (builtins.fromTOML (builtins.readFile \(config))))
            """
        let output = try await NixModulesTests.nix("nix-instantiate", ["--eval", "--json", "--expr", expression])
        guard output.exitCode == 0 else { throw TestSupportError("nix-instantiate: \(output.standardError)") }
        return try JSONDecoder().decode(String.self, from: Data(output.standardOutput.utf8))
    }

    @Test func clientConfigWritesTheHostsIntervalAndTheTimersTakeIt() async throws {
        let fixture = try Self.fleet()
        defer { fixture.remove() }
        let units = fixture.directory.path("units")
        try FileIO.createDirectories(units)
        for (host, seconds, span) in [("fast", 300, "5min"), ("slow", 3600, "1h")] {
            let output = try await fixture.fleet(["client-config", host])
            #expect(output.exitCode == 0, "\(output.standardError)")
            let client = try ClientConfiguration.parse(output.standardOutput, file: "client.toml")
            #expect(client.pollIntervalSeconds == seconds)
            #expect(output.standardOutput.contains("\npoll_interval_seconds = \(seconds)\n"))
            let config = fixture.directory.path("\(host).toml")
            try FileIO.writeAtomically(Array(output.standardOutput.utf8), to: config, mode: 0o644)
            #expect(try await Self.installedInterval(config: config, into: units) == span)
            #expect(try await Self.moduleInterval(config: config) == span, "the NixOS module's timer")
        }
        // A client.toml that does not say: 15 minutes on both kinds of host, and what the host reports.
        let output = try await fixture.fleet(["client-config", "fast"])
        let config = fixture.directory.path("unsaid.toml")
        let unsaid = output.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("poll_interval_seconds") }.joined(separator: "\n")
        try FileIO.writeAtomically(Array(unsaid.utf8), to: config, mode: 0o644)
        #expect(try ClientConfiguration.load(path: config).pollIntervalSeconds == 900)
        #expect(try await Self.installedInterval(config: config, into: units) == "15min")
        #expect(try await Self.moduleInterval(config: config) == "15min")

        // An interval no timer takes is refused by name, rather than written into a client.toml that fails.
        let bad = try await fixture.fleet(["client-config", "bad"])
        #expect(bad.exitCode == 1 && bad.standardOutput.isEmpty)
        #expect(bad.standardError.contains("[hosts.bad] polls every 10 s"), "\(bad.standardError)")
        let tooOften = unsaid + "poll_interval_seconds = 30\n"
        #expect(throws: ConfigurationError.self) { try ClientConfiguration.parse(tooOften, file: "client.toml") }
    }

    /// A heartbeat as fleet-client writes it, saying it polls every `seconds`, received `secondsAgo` ago.
    static func plantHeartbeat(_ review: ReviewFixture, _ host: String, pollInterval seconds: Int?, secondsAgo: Int)
        throws
    {
        var beat = Heartbeat(
            host: host, at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1, failedGeneration: nil,
            lastResult: .unchanged, reason: nil, rebootNeeded: false)
        beat.pollIntervalSeconds = seconds
        try FileIO.writeAtomically(beat.encoded(), to: review.logs(host) + "/heartbeat.json", mode: 0o640)
        try review.age(host, "heartbeat.json", secondsAgo: secondsAgo)
    }

    @Test func statusJudgesSilenceByTheIntervalTheHostLastReported() async throws {
        // fleet.toml expects 900 s polls of every host (silent after 45 minutes).
        let review = try await ReviewFixture(
            hosts: ["fast", "slow", "unsaid", "liar"], defaults: "poll_interval_seconds = 900")
        defer { review.remove() }
        try Self.plantHeartbeat(review, "fast", pollInterval: 300, secondsAgo: 20 * 60)
        try Self.plantHeartbeat(review, "slow", pollInterval: 3600, secondsAgo: 20 * 60)
        try Self.plantHeartbeat(review, "unsaid", pollInterval: nil, secondsAgo: 20 * 60)
        try Self.plantHeartbeat(review, "liar", pollInterval: 10_000_000, secondsAgo: 60)
        let snapshot = try await review.refresh()
        let fast = try review.status(snapshot, "fast")
        #expect(fast.state == .silent, "300 s polls, 20 minutes without one: silent")
        #expect(fast.silentAfterSeconds == 900 && fast.pollIntervalSeconds == 300)
        #expect(fast.reason?.contains("3 × 300 s polls, the interval it reported") == true, "\(fast.reason ?? "")")
        let slow = try review.status(snapshot, "slow")
        #expect(slow.state == .upToDate, "hourly polls: 20 minutes is nothing")
        #expect(slow.silentAfterSeconds == 3 * 3600 && slow.pollIntervalSeconds == 3600)
        let unsaid = try review.status(snapshot, "unsaid")
        #expect(unsaid.state == .upToDate && unsaid.pollIntervalSeconds == 900, "fleet.toml's until it says")
        // An interval no timer takes (a host that would never be silent) is refused like any absurd value.
        let liar = try review.status(snapshot, "liar")
        #expect(liar.state == .neverSeen && liar.pollIntervalSeconds == 900)
        #expect(liar.warnings.contains { $0.contains("pollIntervalSeconds 10000000 is outside 60…604800") })

        // The newest word wins: a report saying 3600 after the 300 s heartbeat.
        try review.plantReport("fast", 1) {
            $0.pollIntervalSeconds = 3600
            // Written after the heartbeat (02:00), as a real host's next report is.
            $0.startedAt = "2026-11-22T02:10:00Z"
            $0.finishedAt = "2026-11-22T02:10:30Z"
        }
        let later = try await review.refresh()
        #expect(try review.status(later, "fast").state == .upToDate)
        #expect(try review.status(later, "fast").pollIntervalSeconds == 3600)
    }
}

extension ClientRunTests {
    /// The whole chain with a real host: fleet.toml → client-config → client.toml → the host's report and
    /// heartbeat → fleet status.
    @Test func aHostReportsTheIntervalItPollsAtAndStatusUsesIt() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"]) { fixture in
            try fixture.write(
                "fleet.toml",
                try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                    + "\n[defaults]\npoll_interval_seconds = 300\n")
        }
        defer { fleet.stop() }
        #expect(try ClientConfiguration.load(path: fleet.configPath("alpha")).pollIntervalSeconds == 300)
        // The host's own client.toml says otherwise (edited there): what it says is what counts.
        try fleet.editClientConfiguration("alpha") {
            $0.replacingOccurrences(of: "poll_interval_seconds = 300", with: "poll_interval_seconds = 3600")
        }
        var output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.applied, "\(output.standardOutput)\(output.standardError)")
        #expect(try fleet.lastReport("alpha")?.pollIntervalSeconds == 3600)
        output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.unchanged, "\(output.standardOutput)\(output.standardError)")
        let beat = try HeartbeatFiles.heartbeat(in: try fleet.layout("alpha").logs)
        #expect(beat.pollIntervalSeconds == 3600)
        output = try await fleet.fixture.fleet(["status", "--json"])
        struct Output: Decodable { var hosts: [HostStatus] }
        let row = try #require(
            try JSONDecoder().decode(Output.self, from: Data(output.standardOutput.utf8)).hosts.first)
        #expect(row.pollIntervalSeconds == 3600 && row.silentAfterSeconds == 3 * 3600, "\(row)")
    }
}
