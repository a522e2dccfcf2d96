import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import HostAgent
import Testing

/// A run whose reader went away: it carries on and exits with its own status.
extension ClientRunTests {
    @Test func aRunWhoseReaderWentAwayFinishesAndExitsWithItsOwnStatus() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        let environment = ["FLEET_ACTIVATION_LOG": fleet.activationLog("alpha")]
        let config = ["--config", fleet.configPath("alpha")]

        // A whole apply with nobody reading: applied, reported, nothing left pending.
        #expect(try Self.runWithLostReader(["run"] + config, environment: environment) == Self.applied)
        let state = try fleet.state("alpha")
        #expect(state.applied?.generation == 1 && state.lastResult == .applied)
        #expect(try FileStatus.of(fleet.stateDirectory("alpha") + "/pending.json") == nil)
        #expect(try fleet.lastReport("alpha")?.state == .applied)
        #expect(fleet.activations("alpha").count == 2)
        // And as the issue has it: `fleet-client run … | head -c1` exits with the run's status, not 141.
        let output = try await Command.run(
            "/bin/bash",
            [
                "-c", "\"$0\" run --config \"$1\" 2>&1 | head -c1 >/dev/null; exit ${PIPESTATUS[0]}",
                FleetFixture.executable("fleet-client"), fleet.configPath("alpha"),
            ], environment: environment)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        for arguments in [["status"], ["check"], ["--help"]] {
            #expect(try Self.runWithLostReader(arguments + config, environment: environment) == 0, "\(arguments)")
        }
    }
}

extension ClientRunSuite {
    /// Runs `fleet-client <arguments>` with standard output and error on a pipe whose reading end is already
    /// closed, and SIGPIPE at its default (as a shell gives it): every line it writes meets a lost reader.
    static func runWithLostReader(_ arguments: [String], environment: [String: String]) throws -> Int32 {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw TestSupportError("pipe: errno \(errno)") }
        close(ends[0])
        defer { close(ends[1]) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, ends[1], 1)
        posix_spawn_file_actions_adddup2(&actions, ends[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF))
        let argv = [FleetFixture.executable("fleet-client")] + arguments
        let environ =
            ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = environ.map { strdup($0) } + [nil]
        defer { (cArguments + cEnvironment).forEach { free($0) } }
        let spawned = posix_spawn(&pid, argv[0], &actions, &attributes, cArguments, cEnvironment)
        guard spawned == 0 else { throw TestSupportError("posix_spawn: \(spawned)") }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        return raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
    }
}
