import CommandRunner
import FleetTestSupport
import Foundation
import ServerSetup
import Testing

/// `fleet sshd-config` sizes MaxStartups and LoginGraceTime for a burst of every host polling at once, and the
/// real sshd accepts what it emits for every fleet size.
@Suite("sshd sizing for bursts")
struct SSHDSizingTests {
    /// `fleet sshd-config ARGUMENTS` for a dedicated sshd, written to a file `sshd -t` can check.
    static func dedicatedConfiguration(_ fixture: FleetFixture, _ arguments: [String]) async throws -> (
        output: CommandOutput, path: String
    ) {
        let key = try KeyPair.generate(at: fixture.directory.path("ssh_host_ed25519_key"), comment: "root@server")
        let output = try await fixture.fleet(
            [
                "sshd-config", "--listen-address", "127.0.0.1", "--port", "2222", "--host-private-key",
                key.privateKeyPath, "--pid-file", fixture.directory.path("sshd.pid"), "--cores", "2",
            ] + arguments)
        try fixture.directory.writeFile("sshd_config", text: output.standardOutput, mode: 0o600)
        return (output, fixture.directory.path("sshd_config"))
    }

    static func sshdTest(_ path: String) throws -> String? {
        try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        let result = try TestCommand.run("/usr/sbin/sshd", ["-t", "-f", path])
        return result.succeeded ? nil : result.standardError + result.standardOutput
    }

    @Test(arguments: [1, 100, 1_000, 10_000])
    func theEmittedConfigurationPassesSSHDTest(hosts: Int) async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        let (output, path) = try await Self.dedicatedConfiguration(fixture, ["--hosts", String(hosts)])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(try Self.sshdTest(path) == nil)
        let sizing = SSHDConfiguration.BurstSizing(hosts: hosts, cores: 2)
        #expect(output.standardOutput.contains("\nMaxStartups \(sizing.start):\(sizing.rate):\(sizing.full)\n"))
        #expect(output.standardOutput.contains("\nLoginGraceTime \(sizing.loginGraceSeconds)\n"))
        #expect(output.standardOutput.contains("# Sized for \(hosts) host"))
        #expect(output.standardError.contains("note: sized for \(hosts) host"), "\(output.standardError)")
        // Only directives every supported sshd accepts: 9.8's PerSourcePenalties appears in comments only.
        #expect(!output.standardOutput.split(separator: "\n").contains { $0.hasPrefix("PerSource") })
    }

    @Test func withoutHostsItSizesForTheHostsInFleetTOML() async throws {
        let fixture = try FleetFixture(hosts: ["a", "b", "c"])
        defer { fixture.remove() }
        let (output, path) = try await Self.dedicatedConfiguration(fixture, [])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(
            output.standardError.contains(
                "note: sized for 3 hosts and 2 cores: MaxStartups 10:30:100, LoginGraceTime 30"))
        #expect(output.standardOutput.contains("\nMaxStartups 10:30:100\n"))
        #expect(try Self.sshdTest(path) == nil)
    }

    @Test func matchOnlyAdvisesTheGlobalSettingsInCommentsAndStillPasses() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        let output = try await fixture.fleet(["sshd-config", "--match-only", "--hosts", "1000", "--cores", "8"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(!output.standardOutput.split(separator: "\n").contains { $0.hasPrefix("MaxStartups") })
        #expect(
            output.standardOutput.contains(
                "# For bursts of polls, its global section should say: MaxStartups 40:30:400"))
        #expect(output.standardError.contains("MaxStartups 40:30:400 and LoginGraceTime 30 (1000 hosts, 8 cores)"))
        #expect(try TestSSHD.validate(configBody: output.standardOutput) == nil)
    }

    @Test func hostileHostCountsAreRefusedAndNothingIsPrinted() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        for hostile in [
            "0", "-1", "1000001", "abc", "1e3", "", " 5", "10\nMaxStartups 1:1:1", "99999999999999999999999",
        ] {
            for flag in ["--hosts", "--cores"] {
                let output = try await fixture.fleet(["sshd-config", flag, hostile])
                #expect(output.exitCode == 64, "\(flag) \(String(reflecting: hostile)): \(output.standardError)")
                #expect(output.standardOutput.isEmpty, "\(flag) \(String(reflecting: hostile))")
                #expect(output.standardError.contains(flag), "\(String(reflecting: hostile)): \(output.standardError)")
            }
        }
        let output = try await fixture.fleet(["sshd-config", "--cores", "1025"])
        #expect(output.exitCode == 64 && output.standardError.contains("--cores 1025"), "\(output.standardError)")
    }

    @Test(arguments: [1, 2, 8, 64, 1024])
    func sizingGrowsWithTheFleetAndTheCoresWithinBounds(cores: Int) {
        var previous = SSHDConfiguration.BurstSizing(hosts: 1, cores: cores)
        for hosts in [2, 10, 99, 100, 101, 500, 1_000, 5_000, 10_000, 1_000_000] {
            let sizing = SSHDConfiguration.BurstSizing(hosts: hosts, cores: cores)
            #expect(sizing.start >= previous.start && sizing.full >= previous.full, "\(hosts)")
            #expect(sizing.start < sizing.full && (1...100).contains(sizing.rate), "\(hosts)")
            #expect(sizing.full <= 50 * cores, "no more handshakes at once than the cores finish: \(hosts)")
            #expect((30...120).contains(sizing.loginGraceSeconds), "\(hosts)")
            previous = sizing
        }
        let two = SSHDConfiguration.BurstSizing(hosts: 10_000, cores: 2)
        #expect(two.start == 10 && two.rate == 30 && two.full == 100, "measured best on 2 cores (bench/herd)")
    }
}
