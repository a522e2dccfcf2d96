import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import HostAgent
import Publishing
import ServerStore
import Testing

/// Stopping the page while the run its button started is inside its confirmation window.
extension UpdatePageTests {
    @Test func stoppingThePageInsideTheConfirmationWindowLetsTheRunFinishAndReport() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        #expect(try await fleet.client("alpha").exitCode == RunOutcome.applied.exitStatus)
        // The health check says when the run is inside its window, then holds it there until released.
        let inside = fleet.clients.path("inside-window")
        let release = fleet.clients.path("release-window")
        try fleet.clients.writeFile(
            "check.sh",
            text: """
                #!/bin/sh
                : > \(inside)
                for _ in $(seq 300); do [ -e \(release) ] && exit 0; sleep 0.1; done
                exit 1

                """, mode: 0o755)
        try fleet.editClientConfiguration("alpha") { text in
            text.replacingOccurrences(of: "confirm_timeout_seconds = 6", with: "confirm_timeout_seconds = 60")
                .components(separatedBy: "\n[[health_checks]]")[0]
                + "\n[[health_checks]]\nname = \"held\"\ncommand = [\"\(fleet.clients.path("check.sh"))\"]\n"
                + "timeout_seconds = 50\n"
        }
        try fleet.fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"second\" ]; }\n")
        try await fleet.publish()

        let page = try await ServedPage.start(
            config: fleet.configPath("alpha"), logPath: fleet.clients.path("serve.log"), directory: fleet.clients,
            environment: ["FLEET_ACTIVATION_LOG": fleet.activationLog("alpha")])
        defer { page.stop() }
        #expect(try await page.http.press().status == 202)
        let journal = fleet.stateDirectory("alpha") + "/pending.json"
        var runPID: Int32?
        let deadline = ContinuousClock.now + .seconds(120)
        while runPID == nil && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            guard try FileStatus.of(inside) != nil, let bytes = try? FileIO.read(journal) else { continue }
            runPID = (try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])?["pid"] as? Int32
        }
        let pid = try #require(runPID, "the run never reached its confirmation window: \(page.process.log())")
        // Whatever else happens, a run left behind by a failing test does not outlive it.
        defer { if kill(pid, 0) == 0 { kill(pid, SIGKILL) } }

        // Stop the page as a terminal or a service manager would: SIGTERM to its whole process group.
        #expect(kill(-page.process.pid, SIGTERM) == 0)
        #expect(await page.process.waitForExit(timeout: .seconds(10)) != nil, "the page stopped")
        try fleet.clients.writeFile("release-window", text: "")

        // The run finishes by itself: confirmed, made the boot default, reported, journal gone.
        let finished = ContinuousClock.now + .seconds(60)
        while try ContinuousClock.now < finished && (FileStatus.of(journal) != nil || kill(pid, 0) == 0) {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(kill(pid, 0) != 0, "the run ended")
        #expect(try FileStatus.of(journal) == nil, "no pending.json left behind")
        let state = try fleet.state("alpha")
        #expect(state.applied?.generation == 2 && state.lastResult == .applied, "\(state)")
        let system = try #require(state.applied?.system)
        #expect(fleet.activations("alpha").suffix(2) == ["test alpha \(system)", "boot alpha \(system)"])
        let report = try #require(try fleet.lastReport("alpha"))
        #expect(report.state == .applied && report.generation == 2, "\(report)")
        let log = String(decoding: try FileIO.read(try fleet.layout("alpha").logs + "/" + report.log!), as: UTF8.self)
        #expect(log.contains("generation 2 confirmed"), "the lines written after the page went are in the log")
    }
}
