import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import ServerStore
import Testing

/// What real NixOS builds do that toy ones do not: log megabytes, and sometimes hang.
extension ClientBuildTests {
    /// Nix's output goes to a file as it comes and to the journal line by line: a build that logs 20 MB
    /// succeeds (it failed past 16 MiB of captured output), and the uploaded log stays capped.
    @Test func aHostBuildThatLogsMegabytesStreamsAndSucceeds() async throws {
        let fleet = try await ClientFleet.start(hosts: ["chatty"])
        defer { fleet.stop() }
        try Self.writeSystem(
            "chatty",
            script: "/usr/bin/seq 1 600000 | /bin/sed 's/^/a chatty build says line /' >&2",
            in: fleet)
        try await fleet.publish()
        let output = try await fleet.client("chatty", outputLimit: 64 << 20)
        #expect(output.exitCode == Self.applied, "\(output.standardError.suffix(2000))")
        // The journal saw the build as it went.
        #expect(output.standardError.contains("a chatty build says line 600000"))
        let file = fleet.stateDirectory("chatty") + "/build.log"
        #expect(try #require(try FileStatus.of(file)).size > 17 << 20, "the whole output is in \(file)")
        let report = try #require(try fleet.lastReport("chatty"))
        let log = try FileIO.read(try fleet.layout("chatty").logs + "/" + report.log!)
        #expect(log.count < 5 << 20, "the uploaded log stays capped: \(log.count) bytes")
        #expect(String(decoding: log, as: UTF8.self).contains("are only in \(file)"))
        // The page's progress file follows the build too, bounded, and is readable by the unprivileged page,
        // as is state.json.
        let progress = try #require(try RunProgress.load(stateDirectory: fleet.stateDirectory("chatty")))
        #expect(progress.phase == .finished && progress.outcome == "applied", "\(progress.summary ?? "")")
        #expect(progress.lines.count <= RunProgress.lineLimit && progress.droppedLines > 0)
        #expect(
            progress.lines.contains { $0.hasSuffix("> a chatty build says line 600000") }, "\(progress.lines.suffix(9))"
        )
        for name in [RunProgress.fileName, ClientState.fileName] {
            let status = try #require(try FileStatus.of(fleet.stateDirectory("chatty") + "/" + name))
            #expect(status.permissions == 0o644, "\(name)")
        }
    }

    /// A build that hangs is killed with everything it started when `[timeouts] build_seconds` has passed; the
    /// generation fails like any other and the lock is free again.
    @Test func aHungBuildIsKilledAtItsTimeoutAndTheGenerationFails() async throws {
        let fleet = try await ClientFleet.start(hosts: ["hung"])
        defer { fleet.stop() }
        let marker = "fleet-hung-build-\(UUID().uuidString.prefix(8))"
        try Self.writeSystem("hung", script: "/bin/sleep 600 # \(marker)\n/bin/sleep 600", in: fleet)
        try await fleet.publish()
        try fleet.editClientConfiguration("hung") {
            $0.replacingOccurrences(of: "build_seconds = 3600", with: "build_seconds = 3")
        }
        let started = ContinuousClock.now
        let output = try await fleet.client("hung")
        #expect(ContinuousClock.now - started < .seconds(60))
        #expect(output.exitCode == Self.failed, "\(output.standardError)")
        #expect(output.standardError.contains("build failed: timed out after 3 s"), "\(output.standardError)")
        let report = try #require(try fleet.lastReport("hung"))
        #expect(report.state == .failed && report.reason?.contains("timed out after 3 s") == true)
        #expect(try fleet.state("hung").failed?.generation == 2 || fleet.state("hung").failed?.generation == 1)
        // Nothing it started is left running.
        let deadline = ContinuousClock.now + .seconds(10)
        var left = ProcessTable.processes(commandLineContaining: marker)
        while !left.isEmpty && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            left = ProcessTable.processes(commandLineContaining: marker)
        }
        #expect(left.isEmpty, "still running: \(left)")
        // The lock is free: the next run is not refused as locked.
        #expect(try await fleet.client("hung").exitCode != RunOutcome.locked.exitStatus)
    }
}

extension ClientRunSuite {
    /// A host flake whose system is built by `script` (a new derivation each time: one already in the store
    /// would not be built again).
    static func writeSystem(_ host: String, script: String, in fleet: ClientFleet) throws {
        try fleet.fixture.write("hosts/\(host)/flake.nix", ToySystem.flake(host: host, name: "real", script: script))
    }
}
