import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import ServerStore
import Testing

/// `fleet status` and `fleet logs` on what real fleet-client runs uploaded through a real sshd.
extension ClientResumeAndReviewTests {
    @Test func statusAndLogsShowWhatRealRunsReported() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha", "beta", "gamma"])
        defer { fleet.stop() }
        let environment = ["FLEET_ACTIVATION_HOOK": try Self.writeHook(fleet)]
        var rows = try await status(fleet)
        #expect(rows.values.allSatisfy { $0.state == .neverSeen && $0.publishedGeneration == 1 })

        for host in fleet.hosts {
            let output = try await fleet.client(host, environment: environment)
            #expect(output.exitCode == Self.applied, "\(host): \(output.standardError)")
        }
        rows = try await status(fleet)
        for host in fleet.hosts {
            #expect(
                rows[host]?.state == .upToDate && rows[host]?.appliedGeneration == 1,
                "\(host): \(String(describing: rows[host]))")
            #expect(
                rows[host]?.warningCount == 0, "what fleet-client uploads is accepted: \(rows[host]?.warnings ?? [])")
        }

        // beta's next generation does not build; gamma's cuts the server off and is rolled back.
        try fleet.fixture.write("hosts/beta/configuration.nix", "{ motd = [ (builtins.throw \"a typo in beta\") ]; }\n")
        try fleet.fixture.write("hosts/gamma/configuration.nix", "{ motd = [ \"STOP-SSHD\" ]; }\n")
        try await fleet.publish()
        var output = try await fleet.client("beta", environment: environment)
        #expect(output.exitCode == Self.failed, "\(output.standardError)")
        output = try await fleet.client("gamma", environment: environment)
        kill(fleet.sshd.pid, SIGCONT)
        #expect(output.exitCode == Self.rolledBack, "\(output.standardError)")
        // The server is back: gamma delivers its report, alpha polls and finds nothing new.
        #expect(try await fleet.client("gamma", environment: environment).exitCode == Self.unchanged)
        #expect(try await fleet.client("alpha", environment: environment).exitCode == Self.unchanged)

        rows = try await status(fleet)
        #expect(rows["alpha"]?.state == .upToDate && rows["alpha"]?.lastResult == "unchanged")
        let beta = try #require(rows["beta"])
        #expect(beta.state == .failed && beta.publishedGeneration == 2 && beta.appliedGeneration == 1)
        #expect(beta.failedGeneration == 2 && beta.reason?.contains("a typo in beta") == true, "\(beta.reason ?? "")")
        let gamma = try #require(rows["gamma"])
        #expect(gamma.state == .rolledBack && gamma.appliedGeneration == 1 && gamma.failedGeneration == 2)
        #expect(gamma.reason?.contains("not confirmed within 6 s") == true, "\(gamma.reason ?? "")")
        #expect(rows.values.allSatisfy { $0.warningCount == 0 && $0.lastSeenSecondsAgo ?? 99 < 60 })

        let table = try await fleet.fixture.fleet(["status"])
        #expect(table.standardOutput.contains("1 up to date, 1 failed, 1 rolled back"), "\(table.standardOutput)")

        // fleet logs: the reports and the full logs, from state.db.
        output = try await fleet.fixture.fleet(["logs", "beta", "--last", "1"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("state:     failed (generation 2, running 1 before)"))
        #expect(output.standardOutput.contains(" build path:") && output.standardOutput.contains("a typo in beta"))
        output = try await fleet.fixture.fleet(["logs", "alpha", "--json"])
        let runs = try JSONDecoder().decode([RunRecord].self, from: Data(output.standardOutput.utf8))
        #expect(runs.count == 1 && runs[0].state == "applied" && runs[0].generation == 1)
        #expect(runs[0].log?.contains("switch-to-configuration test") == true)
    }
}

extension ClientRunSuite {
    /// `fleet status --json`, by host.
    func status(_ fleet: ClientFleet) async throws -> [String: HostStatus] {
        let output = try await fleet.fixture.fleet(["status", "--json"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let rows = try JSONDecoder().decode(StatusOutput.self, from: Data(output.standardOutput.utf8)).hosts
        return Dictionary(uniqueKeysWithValues: rows.map { ($0.host, $0) })
    }
}

/// What `fleet status --json` prints, as far as the client suites read it.
private struct StatusOutput: Decodable { var hosts: [HostStatus] }
