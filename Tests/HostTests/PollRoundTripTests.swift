import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import ServerStore
import Testing

/// The no-change poll writes its heartbeat while it reads the manifest (drafted from the last run's result) and
/// renames it into place only when the draft is this run's heartbeat and its write succeeded: a failed write
/// leaves the previous heartbeat in place and says why, and a draft that turns out wrong is replaced by the
/// right heartbeat.
///
/// Serialized, and in parallel with the other client suites: see ``ClientRunSuite``.
@Suite("The pipelined no-change poll with a real sshd and Nix", .serialized)
struct PollRoundTripTests: ClientRunSuite {
    @Test func theHeartbeatIsRenamedOnlyWhenItsDraftWasWrittenAndIsRight() async throws {
        let host = "rtthost"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        let logs = try fleet.layout(host).logs
        func heartbeat() throws -> Heartbeat {
            try JSONDecoder().decode(Heartbeat.self, from: Data(try FileIO.read(logs + "/heartbeat.json")))
        }
        func temporaries() throws -> [String] { try fleet.uploaded(host).filter { $0.hasPrefix(".fleet-tmp-") } }

        var output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        // The first poll after applying drafts "applied" (the last result): wrong, so the right one is written.
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(try heartbeat().lastResult == .unchanged && heartbeat().appliedGeneration == 1)
        #expect(try temporaries().isEmpty, "the right heartbeat went through the temporary name")
        // From now on the draft is right: it is renamed into place, and no temporary file stays behind.
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(!output.standardError.contains("could not write the heartbeat"), "\(output.standardError)")
        #expect(try heartbeat().lastResult == .unchanged && heartbeat().reason == "generation 1 is applied and current")
        #expect(try temporaries().isEmpty)

        // The temporary name is a directory: the write fails, the heartbeat in place stays, and the run says why.
        let previous = try FileIO.read(logs + "/heartbeat.json")
        let blocker = logs + "/.fleet-tmp-heartbeat.json"
        try FileIO.createNewDirectory(blocker, mode: 0o755)
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "a heartbeat is no reason to fail the poll: \(output.standardError)")
        #expect(
            output.standardError.contains(
                "could not write the heartbeat: Could not write /logs/.fleet-tmp-heartbeat.json"),
            "\(output.standardError)")
        #expect(try FileIO.read(logs + "/heartbeat.json") == previous, "the previous heartbeat is kept")
        try FileIO.removeEmptyDirectory(blocker)

        // No manifest on the server: the same result as ever, and the heartbeat says so (drafted wrong first, then
        // right).
        let manifest = try FileIO.read(try fleet.layout(host).manifest)
        unlink(try fleet.layout(host).manifest)
        for _ in 0..<2 {
            output = try await fleet.client(host)
            #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
            #expect(output.standardError.contains("no manifest on the server"), "\(output.standardError)")
            #expect(try heartbeat().reason?.contains("no manifest on the server") == true)
            #expect(try temporaries().isEmpty)
        }
        try fleet.plant(host, "/manifest", manifest)
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(try heartbeat().reason == "generation 1 is applied and current")

        // Something new: as before, that poll reports and writes no heartbeat, and its draft is removed.
        let before = try FileIO.read(logs + "/heartbeat.json")
        try fleet.fixture.write("common/base.nix", "{ motd = [ \"rtt, edited\" ]; }\n")
        try await fleet.publish()
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(try fleet.state(host).applied?.generation == 2)
        #expect(try FileIO.read(logs + "/heartbeat.json") == before)
        let left = try temporaries()
        #expect(left.isEmpty, "\(left)")
    }
}
