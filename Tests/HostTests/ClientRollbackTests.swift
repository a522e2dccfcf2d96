import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import Publishing
import ServerStore
import Testing

/// Magic rollback and reboots (see ``ClientRunSuite`` for what the client suites share).
///
/// The toy systems run `$FLEET_ACTIVATION_HOOK` on activation; these tests point it at a script that cuts the
/// network the way a bad generation would: it stops the test's own sshd (by PID, with SIGSTOP) when the system
/// being activated says so in its motd.
@Suite("fleet-client rollbacks, reboots and operations with a real sshd and Nix", .serialized)
struct ClientRollbackTests: ClientRunSuite {
    func publishSecondGeneration(_ fleet: ClientFleet, motd: String) async throws {
        try fleet.fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"\(motd)\" ]; }\n")
        try await fleet.publish()
    }

    @Test func aGenerationThatCutsTheServerOffIsRolledBackAndReportedWhenTheServerReturns() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        let hook = try Self.writeHook(fleet)
        let environment = ["FLEET_ACTIVATION_HOOK": hook]
        #expect(try await fleet.client("alpha", environment: environment).exitCode == Self.applied)
        let good = try #require(try fleet.profileGeneration("alpha"))

        try await publishSecondGeneration(fleet, motd: "STOP-SSHD")
        let output = try await fleet.client("alpha", environment: environment)
        defer { kill(fleet.sshd.pid, SIGCONT) }
        #expect(output.exitCode == Self.rolledBack, "\(output.standardError)")
        #expect(output.standardError.contains("confirmation attempt 2 failed"), "attempts are spread over the window")
        #expect(output.standardError.contains("could not be reached over a new SSH connection"))
        let profile = try #require(try fleet.profileGeneration("alpha"))
        #expect(profile.number == good.number && profile.system == good.system)
        let newSystem = try #require(fleet.activations("alpha").dropFirst(2).first?.split(separator: " ").last)
        #expect(
            fleet.activations("alpha").suffix(2) == ["test alpha \(newSystem)", "switch alpha \(good.system)"],
            "the new system was only tested, then the previous one switched back: \(fleet.activations("alpha"))")
        var state = try fleet.state("alpha")
        #expect(state.failed?.state == .rolledBack && state.failed?.generation == 2 && state.applied?.generation == 1)
        #expect(try FileStatus.of(fleet.stateDirectory("alpha") + "/pending.json") == nil)
        #expect(try fleet.lastReport("alpha")?.generation == 1, "the server was unreachable: nothing uploaded yet")

        // The server returns: the report is delivered, and the generation is not tried again.
        kill(fleet.sshd.pid, SIGCONT)
        let next = try await fleet.client("alpha", environment: environment)
        #expect(next.exitCode == Self.unchanged, "\(next.standardError)")
        #expect(next.standardError.contains("was rolled back"))
        let report = try #require(try fleet.lastReport("alpha"))
        #expect(report.state == .rolledBack && report.generation == 2)
        #expect(report.reason?.contains("not confirmed within 6 s") == true, "\(report.reason ?? "")")
        #expect(fleet.activations("alpha").count == 4, "exactly one rollback, no retry")
        state = try fleet.state("alpha")
        #expect(state.applied?.generation == 1)

        // A newer generation is applied normally.
        try await publishSecondGeneration(fleet, motd: "third")
        #expect(try await fleet.client("alpha", environment: environment).exitCode == Self.applied)
        #expect(try fleet.state("alpha").applied?.generation == 3)
    }

    @Test func anOutageShorterThanTheWindowCausesNoRollback() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        try fleet.editClientConfiguration("alpha") {
            $0.replacingOccurrences(of: "confirm_timeout_seconds = 6", with: "confirm_timeout_seconds = 20")
                .replacingOccurrences(of: "confirm_attempts = 2", with: "confirm_attempts = 5")
        }
        let environment = ["FLEET_ACTIVATION_HOOK": try Self.writeHook(fleet)]
        #expect(try await fleet.client("alpha", environment: environment).exitCode == Self.applied)

        try await publishSecondGeneration(fleet, motd: "STOP-SSHD RESUME")
        let output = try await fleet.client("alpha", environment: environment)
        defer { kill(fleet.sshd.pid, SIGCONT) }
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(output.standardError.contains("confirmation attempt 1 failed"), "the outage was seen")
        #expect(output.standardError.contains("confirmed (attempt"))
        let state = try fleet.state("alpha")
        #expect(state.applied?.generation == 2 && state.failed == nil)
        let system = try #require(state.applied?.system)
        #expect(fleet.activations("alpha").suffix(2) == ["test alpha \(system)", "boot alpha \(system)"])
        #expect(try fleet.profileGeneration("alpha")?.system == system)
        #expect(try fleet.lastReport("alpha")?.state == .applied)
    }

    @Test func failingOrHangingHealthChecksRollBack() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        func useHealthCheck(_ command: String, timeout: Int = 5) throws {
            try fleet.editClientConfiguration("alpha") { text in
                let base = text.components(separatedBy: "\n[[health_checks]]")[0]
                return base
                    + "\n[[health_checks]]\nname = \"web\"\ncommand = \(command)\ntimeout_seconds = \(timeout)\n"
            }
        }
        try useHealthCheck("[\"/bin/true\"]")
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        let good = try #require(try fleet.profileGeneration("alpha"))

        try useHealthCheck("[\"/bin/sh\", \"-c\", \"echo the web server is down >&2; exit 7\"]")
        try await publishSecondGeneration(fleet, motd: "second")
        var output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.rolledBack, "\(output.standardError)")
        #expect(output.standardError.contains("health check \"web\" exited with status 7"))
        #expect(try fleet.profileGeneration("alpha")?.system == good.system)
        let report = try #require(try fleet.lastReport("alpha"))
        #expect(report.state == .rolledBack)
        let log = String(decoding: try FileIO.read(try fleet.layout("alpha").logs + "/" + report.log!), as: UTF8.self)
        #expect(log.contains("the web server is down"), "the check's output is in the uploaded log")

        try useHealthCheck("[\"/bin/sleep\", \"30\"]", timeout: 1)
        try await publishSecondGeneration(fleet, motd: "third")
        let started = ContinuousClock.now
        output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.rolledBack, "\(output.standardError)")
        #expect(output.standardError.contains("did not finish within"))
        #expect(ContinuousClock.now - started < .seconds(25), "the hanging check was killed, not waited for")
        #expect(try fleet.profileGeneration("alpha")?.system == good.system)
    }

    @Test func aRunKilledInsideTheWindowIsFinishedByTheNextRun() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        try fleet.editClientConfiguration("alpha") {
            $0.replacingOccurrences(of: "confirm_timeout_seconds = 6", with: "confirm_timeout_seconds = 60")
                .replacingOccurrences(of: "confirm_attempts = 2", with: "confirm_attempts = 3")
        }
        let environment = ["FLEET_ACTIVATION_HOOK": try Self.writeHook(fleet)]
        #expect(try await fleet.client("alpha", environment: environment).exitCode == Self.applied)
        try await publishSecondGeneration(fleet, motd: "STOP-SSHD")
        defer { kill(fleet.sshd.pid, SIGCONT) }

        async let interrupted = fleet.client("alpha", environment: environment)
        let journal = fleet.stateDirectory("alpha") + "/pending.json"
        var pid: Int32?
        for _ in 0..<200 where pid == nil {
            try await Task.sleep(for: .milliseconds(100))
            guard fleet.activations("alpha").count == 3, let bytes = try? FileIO.read(journal) else { continue }
            pid = (try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])?["pid"] as? Int32
        }
        let runPID = try #require(pid, "the run never reached its confirmation window")
        // The activation's hook stops sshd a moment after it logs the activation: wait for that, or the
        // SIGCONT below could come first and sshd would stay stopped for the next run.
        let stat = "/proc/\(fleet.sshd.pid)/stat"
        for _ in 0..<200 {
            let fields = ((try? String(contentsOfFile: stat, encoding: .utf8)) ?? "").split(separator: ")").last
            if fields?.split(separator: " ").first == "T" { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(kill(runPID, SIGKILL) == 0)
        #expect(try await interrupted.exitCode == 128 + SIGKILL)
        #expect(try FileStatus.of(journal) != nil, "the journal outlives the killed run")

        kill(fleet.sshd.pid, SIGCONT)
        let output = try await fleet.client("alpha", environment: environment)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(output.standardError.contains("resuming generation 2 from the activation journal"))
        let state = try fleet.state("alpha")
        #expect(state.applied?.generation == 2)
        let system = try #require(state.applied?.system)
        #expect(fleet.activations("alpha").suffix(2) == ["test alpha \(system)", "boot alpha \(system)"])
        #expect(try FileStatus.of(journal) == nil)
        #expect(try fleet.lastReport("alpha")?.state == .applied)
    }

    @Test func aNeededRebootHappensOnlyInsideTheWindowAndOnce() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        // A booted system whose kernel differs from every toy system's (they have none).
        try FileIO.createDirectories(fleet.clients.path("booted"))
        try fleet.clients.writeFile("vmlinuz-booted", text: "a kernel\n")
        #expect(symlink(fleet.clients.path("vmlinuz-booted"), fleet.clients.path("booted/kernel")) == 0)
        #expect(symlink(fleet.clients.path("booted"), fleet.clients.path("booted-system")) == 0)
        let marker = fleet.clients.path("rebooted")
        try fleet.clients.writeFile("reboot.sh", text: "#!/bin/sh\necho reboot >> \(marker)\n", mode: 0o755)
        let minute = Calendar.current.dateComponents([.hour, .minute], from: Date())
        let now = (minute.hour ?? 0) * 60 + (minute.minute ?? 0)
        func window(from start: Int, to end: Int) -> String {
            func text(_ value: Int) -> String {
                let v = (value % 1440 + 1440) % 1440; return String(format: "%02d:%02d", v / 60, v % 60)
            }
            return "\(text(start))-\(text(end))"
        }
        func usePolicy(_ window: String) throws {
            try fleet.editClientConfiguration("alpha") { text in
                let base = text.components(separatedBy: "\n[reboot]")[0]
                return base + """

                    [reboot]
                    policy = "window"
                    window = "\(window)"
                    command = ["\(fleet.clients.path("reboot.sh"))"]
                    booted_system = "\(fleet.clients.path("booted-system"))"
                    current_system = "\(fleet.clients.path("no-current-system"))"

                    """
            }
        }

        // Outside the window: reported, not done.
        try usePolicy(window(from: now + 120, to: now + 180))
        var output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(output.standardError.contains("waiting for the reboot window"))
        #expect(try FileStatus.of(marker) == nil)
        let report = try #require(try fleet.lastReport("alpha"))
        #expect(report.rebootNeeded == true && report.rebootReason?.contains("kernel") == true)
        #expect(try fleet.state("alpha").rebootNeeded != nil)

        // Inside it (this one crosses midnight when run late): the command runs once, not at every poll.
        try usePolicy(window(from: now - 60, to: now + 60))
        output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(output.standardError.contains("rebooting inside the window"))
        #expect((try? String(contentsOfFile: marker, encoding: .utf8)) == "reboot\n")
        output = try await fleet.client("alpha")
        #expect(output.standardError.contains("already rebooted for"))
        #expect((try? String(contentsOfFile: marker, encoding: .utf8)) == "reboot\n")
        let status = try await fleet.client("alpha", ["status"])
        #expect(status.standardOutput.contains("reboot"))
    }

    @Test func rebootWindowsCrossMidnightOnAFakeClock() throws {
        let night = try RebootWindow("22:30-02:00")
        for (time, inside) in [
            (22 * 60 + 29, false), (22 * 60 + 30, true), (0, true), (119, true), (120, false), (12 * 60, false),
        ] {
            #expect(night.contains(minuteOfDay: time) == inside, "\(time)")
        }
        let day = try RebootWindow("02:00-04:00")
        #expect(day.contains(minuteOfDay: 150) && !day.contains(minuteOfDay: 240) && !day.contains(minuteOfDay: 119))
        for bad in [
            "2:00-04:00", "02:00", "25:00-01:00", "02:00-02:00", "02:60-03:00", "aa:bb-cc:dd", "02:00-04:00-05:00",
        ] {
            #expect(throws: ProtocolError.self, "\(bad)") { try RebootWindow(bad) }
        }
    }
}

extension ClientRunSuite {
    /// A hook that stops sshd when a system whose motd contains `STOP-SSHD` is activated with `test`, and
    /// resumes it two seconds later when the motd also contains `RESUME`.
    static func writeHook(_ fleet: ClientFleet) throws -> String {
        let pid = fleet.sshd.pid
        try fleet.clients.writeFile(
            "hook.sh",
            text: """
                #!/bin/sh
                # $1 operation, $2 host, $3 system
                [ "$1" = test ] || exit 0
                if /bin/grep -q STOP-SSHD "$3/etc/motd"; then
                    kill -STOP \(pid)
                    if /bin/grep -q RESUME "$3/etc/motd"; then
                        ( sleep 2; kill -CONT \(pid) ) </dev/null >/dev/null 2>&1 &
                    fi
                fi
                exit 0

                """, mode: 0o755)
        return fleet.clients.path("hook.sh")
    }
}
