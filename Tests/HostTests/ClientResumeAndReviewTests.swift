import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import Testing

/// Client runs across two invocations: a run killed inside its confirmation window, resumed by the next run
/// long after that window ended; and what `fleet status` makes of real runs.
@Suite("fleet-client resumed confirmations, and fleet status on real runs", .serialized)
struct ClientResumeAndReviewTests: ClientRunSuite {
    @Test func aResumedConfirmationGetsAFreshWindowAndRecordsTheGenerationAsSeen() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        // A health check that takes 3 s of its 30: well inside a 6 s window, never inside 1 s.
        try fleet.editClientConfiguration("alpha") { text in
            text.components(separatedBy: "\n[[health_checks]]")[0]
                + "\n[[health_checks]]\nname = \"slow\"\ncommand = [\"/bin/sleep\", \"3\"]\ntimeout_seconds = 30\n"
        }
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        try fleet.fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"second\" ]; }\n")
        try await fleet.publish()

        async let interrupted = fleet.client("alpha")
        let journal = fleet.stateDirectory("alpha") + "/pending.json"
        var entry: [String: Any]?
        for _ in 0..<300 where entry == nil {
            try await Task.sleep(for: .milliseconds(50))
            guard fleet.activations("alpha").count == 3, let bytes = try? FileIO.read(journal) else { continue }
            entry = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        }
        let pid = try #require(entry?["pid"] as? Int32, "the run never reached its confirmation window")
        let deadline = try #require(entry?["deadline"] as? Double)
        #expect(kill(pid, SIGKILL) == 0)
        #expect(try await interrupted.exitCode == 128 + SIGKILL)
        #expect(try fleet.state("alpha").lastSeen?.generation == 1, "the killed run recorded nothing")
        // Let the interrupted run's window end.
        let wait = deadline - Date().timeIntervalSince1970 + 1
        if wait > 0 { try await Task.sleep(for: .milliseconds(Int(wait * 1000))) }

        let output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(output.standardError.contains("a fresh confirmation window of 6 s"), "\(output.standardError)")
        #expect(!output.standardError.contains("within 1.0 seconds"))
        let state = try fleet.state("alpha")
        #expect(state.applied?.generation == 2 && state.lastSeen?.generation == 2, "\(state)")
        let status = try await fleet.client("alpha", ["status"])
        #expect(status.standardOutput.contains("seen:         generation 2"), "\(status.standardOutput)")
        #expect(try FileStatus.of(journal) == nil)
        #expect(try fleet.lastReport("alpha")?.state == .applied)
        // The recorded sighting is the real one: the next poll finds generation 2 applied, no replay refused.
        let next = try await fleet.client("alpha")
        #expect(next.exitCode == Self.unchanged, "\(next.standardError)")

        // A check the window cuts short says so, with its own timeout, not the window's remainder as its timeout.
        try fleet.editClientConfiguration("alpha") { text in
            text.components(separatedBy: "\n[[health_checks]]")[0]
                + "\n[[health_checks]]\nname = \"hangs\"\ncommand = [\"/bin/sleep\", \"60\"]\ntimeout_seconds = 30\n"
        }
        try fleet.fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"third\" ]; }\n")
        try await fleet.publish()
        let cut = try await fleet.client("alpha")
        #expect(cut.exitCode == RunOutcome.rolledBack.exitStatus, "\(cut.standardError)")
        #expect(
            cut.standardError.contains("health check \"hangs\" was stopped after ")
                && cut.standardError.contains(" s, when the confirmation window ended"),
            "\(cut.standardError)")
        #expect(cut.standardError.contains("(its own timeout is 30 s)"))
        #expect(!cut.standardError.contains("did not finish within"))
    }
}
