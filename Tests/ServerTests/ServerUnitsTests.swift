import CommandRunner
import FleetFiles
import FleetTestSupport
import Foundation
import ServerSetup
import SystemdUnitFiles
import Testing

/// `fleet install-units`: the server's units as systemd's own parser reads them (`systemd-analyze verify`,
/// offline), written only when they change, the dedicated sshd's commands run for real, and hostile values
/// refused by name.
@Suite("fleet install-units")
struct ServerUnitsTests {
    static let allUnits = [
        ServerUnits.sshdServiceName, ServerUnits.publishServiceName, ServerUnits.publishTimerName,
        ServerUnits.reviewServiceName, ServerUnits.reviewTimerName, ServerUnits.refreshServiceName,
        ServerUnits.refreshTimerName,
    ]

    /// `fleet install-units` on a fixture fleet, with the built fleet as the units' binary.
    static func installUnits(_ fixture: FleetFixture, _ arguments: [String]) async throws -> CommandOutput {
        try await fixture.fleet(["install-units", "--binary", FleetFixture.executable("fleet")] + arguments)
    }

    @Test func unitsWrittenByInstallUnitsPassSystemdAnalyzeVerify() async throws {
        let fixture = try FleetFixture(hosts: ["su-a"])
        defer { fixture.remove() }
        let units = fixture.directory.path("units")
        try fixture.directory.makeDirectory("units", mode: 0o755)
        let output = try await Self.installUnits(
            fixture, ["--directory", units, "--publish-every", "10min", "--review-every", "30s"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(try FileIO.listDirectory(units).sorted() == Self.allUnits.sorted())
        #expect(
            output.standardOutput.contains(
                "Next: systemctl daemon-reload && systemctl enable --now fleet-sshd.service fleet-publish.timer "
                    + "fleet-review.timer fleet-refresh.timer"), "\(output.standardOutput)")
        let verified = try await Command.run(
            "/usr/bin/systemd-analyze", ["verify"] + Self.allUnits.map { units + "/" + $0 })
        let complaints = (verified.standardOutput + verified.standardError).split(separator: "\n").filter {
            $0.contains(units) || $0.contains("fleet")
        }
        #expect(verified.exitCode == 0 && complaints.isEmpty, "\(verified.standardOutput)\(verified.standardError)")

        let review = try String(contentsOfFile: units + "/" + ServerUnits.reviewServiceName, encoding: .utf8)
        #expect(
            review.contains(
                "ExecStart=\(FleetFixture.executable("fleet")) review --repo \(fixture.repository) --metrics-file "
                    + "\(fixture.stateDirectory)/fleet.prom\n"), "\(review)")
        // The fixture's directories came from the environment, so the units pin them.
        #expect(review.contains("Environment=FLEET_STATE_DIR=\(fixture.stateDirectory)\n"))
        #expect(review.contains("Environment=FLEET_CHROOT_ROOT=\(fixture.chrootRoot)\n"))
        let timer = try String(contentsOfFile: units + "/" + ServerUnits.reviewTimerName, encoding: .utf8)
        #expect(timer.contains("OnUnitActiveSec=30s\n") && timer.contains("Unit=fleet-review.service\n"))
        // Freeze protection: the refresh re-signs what is due at least every quarter hour, whatever else runs.
        let refresh = try String(contentsOfFile: units + "/" + ServerUnits.refreshServiceName, encoding: .utf8)
        #expect(
            refresh.contains(
                "ExecStart=\(FleetFixture.executable("fleet")) publish --repo \(fixture.repository) --refresh\n"),
            "\(refresh)")
        let refreshTimer = try String(contentsOfFile: units + "/" + ServerUnits.refreshTimerName, encoding: .utf8)
        #expect(
            refreshTimer.contains("OnUnitActiveSec=15min\n") && refreshTimer.contains("Unit=fleet-refresh.service\n"))

        // The check can fail: a unit with a directive systemd does not know is reported.
        try FileIO.writeAtomically(
            Array((review + "Frobnicate=yes\n").utf8), to: units + "/" + ServerUnits.reviewServiceName)
        let failed = try await Command.run(
            "/usr/bin/systemd-analyze", ["verify", units + "/" + ServerUnits.reviewServiceName])
        #expect((failed.standardOutput + failed.standardError).contains("Frobnicate"))
    }

    @Test func runningAgainChangesNothingAndAPublishTimerOnlyWhenWanted() async throws {
        let fixture = try FleetFixture(hosts: ["su-b"])
        defer { fixture.remove() }
        let units = fixture.directory.path("units")
        try fixture.directory.makeDirectory("units", mode: 0o755)
        let first = try await Self.installUnits(fixture, ["--directory", units, "--metrics-file", "/run/fleet.prom"])
        #expect(first.exitCode == 0, "\(first.standardError)")
        let installed = Self.allUnits.filter { $0 != ServerUnits.publishTimerName }
        #expect(
            try FileIO.listDirectory(units).sorted() == installed.sorted(), "no publish timer without --publish-every")
        let before = try installed.map { try FileStatus.of(units + "/" + $0)?.inode }

        let second = try await Self.installUnits(fixture, ["--directory", units, "--metrics-file", "/run/fleet.prom"])
        #expect(second.exitCode == 0, "\(second.standardError)")
        #expect(second.standardOutput.split(separator: "\n").allSatisfy { $0.hasPrefix("unchanged ") })
        #expect(!second.standardOutput.contains("Next:"))
        #expect(try installed.map { try FileStatus.of(units + "/" + $0)?.inode } == before, "nothing rewritten")

        // One option changed: only the unit that says it is written.
        let third = try await Self.installUnits(fixture, ["--directory", units, "--metrics-file", "/run/other.prom"])
        #expect(third.exitCode == 0)
        let written = third.standardOutput.split(separator: "\n").filter { $0.hasPrefix("wrote") }
        #expect(written == ["wrote     \(units)/fleet-review.service"], "\(third.standardOutput)")

        // Without the sshd: no fleet-sshd.service in the plan (the one there is left alone).
        let dry = try await Self.installUnits(fixture, ["--directory", units, "--without-sshd", "--dry-run"])
        #expect(dry.exitCode == 0 && !dry.standardOutput.contains("fleet-sshd.service"))
        #expect(dry.standardOutput.contains("==> \(units)/fleet-review.timer <=="))

        // A publish timer from an earlier install with --publish-every is named, not removed.
        #expect(try await Self.installUnits(fixture, ["--directory", units, "--publish-every", "5min"]).exitCode == 0)
        let without = try await Self.installUnits(fixture, ["--directory", units])
        #expect(without.exitCode == 0)
        #expect(
            without.standardError.contains("note: \(units)/fleet-publish.timer is left"), "\(without.standardError)")
        #expect(try FileStatus.of(units + "/" + ServerUnits.publishTimerName)?.kind == .regular)
        _ = try FileIO.removeFile(units + "/" + ServerUnits.publishTimerName)

        // A masked unit (a link to /dev/null) stops the install before anything is written.
        _ = try FileIO.removeFile(units + "/" + ServerUnits.reviewTimerName)
        guard symlink("/dev/null", units + "/" + ServerUnits.reviewTimerName) == 0 else {
            throw FileSystemError("symlink", path: units)
        }
        let masked = try await Self.installUnits(fixture, ["--directory", units, "--publish-every", "5min"])
        #expect(masked.exitCode == 1 && masked.standardError.contains("a symbolic link (a masked unit?)"))
        #expect(try FileStatus.of(units + "/" + ServerUnits.publishTimerName) == nil)
    }

    @Test func anUpdateTimerOnlyWithUpdateEveryRunsACommittingUpdate() async throws {
        let fixture = try FleetFixture(hosts: ["su-d"])
        defer { fixture.remove() }
        let units = fixture.directory.path("units")
        try fixture.directory.makeDirectory("units", mode: 0o755)
        let output = try await Self.installUnits(
            fixture, ["--directory", units, "--update-every", "1d", "--update-policy", "per-host"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let written = [ServerUnits.updateServiceName, ServerUnits.updateTimerName]
        #expect(Set(try FileIO.listDirectory(units)).isSuperset(of: written))
        #expect(
            output.standardOutput.contains("fleet-review.timer fleet-refresh.timer fleet-update.timer"),
            "\(output.standardOutput)")
        let verified = try await Command.run("/usr/bin/systemd-analyze", ["verify"] + written.map { units + "/" + $0 })
        let complaints = (verified.standardOutput + verified.standardError).split(separator: "\n").filter {
            $0.contains(units) || $0.contains("fleet")
        }
        #expect(verified.exitCode == 0 && complaints.isEmpty, "\(verified.standardOutput)\(verified.standardError)")
        let service = try String(contentsOfFile: units + "/" + ServerUnits.updateServiceName, encoding: .utf8)
        #expect(
            service.contains(
                "ExecStart=\(FleetFixture.executable("fleet")) update --repo \(fixture.repository) --commit --policy "
                    + "per-host\n"), "\(service)")
        #expect(service.contains("Environment=GIT_CONFIG_VALUE_0=\(fixture.repository)\n"))
        let timer = try String(contentsOfFile: units + "/" + ServerUnits.updateTimerName, encoding: .utf8)
        #expect(timer.contains("OnUnitActiveSec=1d\n") && timer.contains("Unit=fleet-update.service\n"))

        // Without --update-every the timer is named, not removed.
        let without = try await Self.installUnits(fixture, ["--directory", units])
        #expect(without.standardError.contains("note: \(units)/fleet-update.timer is left"), "\(without.standardError)")
    }

    @Test func hostileValuesAreRefusedNamingTheOption() async throws {
        let fixture = try FleetFixture(hosts: ["su-c"])
        defer { fixture.remove() }
        let units = fixture.directory.path("units")
        try fixture.directory.makeDirectory("units", mode: 0o755)
        let cases: [([String], String)] = [
            (["--state-dir", "/var/lib/fleet state"], "--state-dir"),
            (["--state-dir", "/var/lib/fleet%h"], "--state-dir"),
            (["--state-dir", "/var/lib/fleet\nExecStartPre=/bin/evil"], "--state-dir"),
            (["--chroot-root", "/srv/$fleet"], "--chroot-root"),
            (["--metrics-file", "/var/lib/node exporter/fleet.prom"], "--metrics-file"),
            (["--metrics-file", "/run/fleet%n.prom"], "--metrics-file"),
            (["--host-private-key", "/etc/fleet/key';reboot;'"], "--host-private-key"),
            (["--sshd-config", "/etc/fleet/sshd\nconfig"], "--sshd-config"),
            (["--binary", "fleet"], "--binary"),
            (["--publish-every", "1 fortnight"], "--publish-every"),
            (["--publish-every", "0"], "--publish-every"),
            (["--review-every", "10ms"], "--review-every"),
            (["--review-every", "1min\nOnBootSec=0"], "--review-every"),
            (["--update-every", "1 fortnight"], "--update-every"),
            (["--update-every", "1d", "--update-policy", "per-host\nExecStartPre=/bin/evil"], "--update-policy"),
            (["--update-every", "1d", "--update-policy", "some"], "--update-policy"),
        ]
        for (arguments, option) in cases {
            let output = try await Self.installUnits(fixture, ["--directory", units] + arguments)
            #expect(output.exitCode != 0, "\(arguments) was accepted")
            #expect(output.standardError.contains(option), "\(arguments): \(output.standardError)")
            #expect(try FileIO.listDirectory(units).isEmpty, "\(arguments) wrote units")
        }
        // The state directory from the environment is held to the same rule, named by its variable.
        let environment = try await fixture.fleet(
            ["install-units", "--directory", units], environment: ["FLEET_STATE_DIR": "/var/lib/a b"])
        #expect(environment.exitCode != 0 && environment.standardError.contains("FLEET_STATE_DIR"))
        // Several problems are all named at once.
        #expect(throws: SetupError.self) {
            try ServerUnits(.init(binary: "/x y", repository: "/r%", metricsFile: "/m", reviewEvery: "soon"))
        }
        do {
            _ = try ServerUnits(.init(binary: "/x y", repository: "/r%", metricsFile: "/m", reviewEvery: "soon"))
        } catch {
            #expect(["--binary", "--repo", "--review-every"].allSatisfy { error.description.contains($0) })
        }
    }

    /// The dedicated sshd's ExecStartPre lines, run as systemd would run them: the missing host key is made
    /// (once), and `sshd -t` accepts the configuration `fleet sshd-config` wrote for it.
    @Test func theSSHDUnitMakesItsHostKeyAndChecksItsConfiguration() async throws {
        let fixture = try FleetFixture(hosts: ["su-d"])
        defer { fixture.remove() }
        // In a directory that does not exist yet: the unit makes it.
        let key = fixture.directory.path("sshd/keys/ssh_host_ed25519_key")
        let configuration = fixture.directory.path("sshd/sshd_config")
        try fixture.directory.makeDirectory("sshd", mode: 0o700)
        let port = try LoopbackPort.free()
        let written = try await fixture.fleet([
            "sshd-config", "--listen-address", "127.0.0.1", "--port", String(port), "--host-private-key", key,
        ])
        #expect(written.exitCode == 0, "\(written.standardError)")
        try FileIO.writeAtomically(Array(written.standardOutput.utf8), to: configuration, mode: 0o600)

        let units = try ServerUnits(
            .init(
                binary: FleetFixture.executable("fleet"), repository: fixture.repository,
                sshdConfiguration: configuration, hostKey: key, metricsFile: "/run/fleet.prom"))
        let sshdUnit = try #require(units.units.first { $0.name == ServerUnits.sshdServiceName }).text
        let commands = sshdUnit.split(separator: "\n").filter { $0.hasPrefix("ExecStartPre=") }
            .map { Self.systemdWords(String($0.dropFirst("ExecStartPre=".count))) }
        #expect(commands.count == 2)
        #expect(commands.first?.prefix(2) == ["/bin/sh", "-c"], "\(commands)")

        for round in 0..<2 {
            for command in commands {
                let output = try await Command.run(command[0], Array(command.dropFirst()))
                #expect(output.exitCode == 0, "round \(round), \(command): \(output.standardError)")
            }
            #expect(try FileStatus.of(key)?.kind == .regular)
            #expect(try FileStatus.of(key + ".pub")?.kind == .regular)
        }
        let public1 = try FileIO.readNoFollow(key + ".pub", limit: 4096)
        #expect(String(decoding: public1, as: UTF8.self).hasPrefix("ssh-ed25519 "))
        #expect(try FileStatus.of(key)?.permissions == 0o600)

        // Without the key sshd -t refuses: the ExecStartPre order matters.
        _ = try FileIO.removeFile(key)
        let refused = try await Command.run("/usr/sbin/sshd", ["-t", "-f", configuration])
        #expect(refused.exitCode != 0, "sshd -t accepted a configuration whose only host key is missing")
    }

    /// A command line split the way systemd splits ExecStart= (words; single or double quotes group).
    static func systemdWords(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        for character in line {
            if let open = quote {
                if character == open { quote = nil } else { current.append(character) }
            } else if character == "'" || character == "\"" {
                quote = character
                inWord = true
            } else if character == " " {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(character)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }
}
