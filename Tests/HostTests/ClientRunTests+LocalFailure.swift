import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import HostAgent
import Testing

/// A host whose own disk stops the run: a real tmpfs with a size limit as the state directory, which fills.
extension ClientRunTests {
    /// An identity file that is missing or not a key is the host's problem: a local failure (16), not a failed
    /// generation (11); the next run, with the key back, applies.
    @Test func aMissingOrUnreadableIdentityFileIsALocalFailure() async throws {
        let fleet = try await ClientFleet.start(hosts: ["keyless"])
        defer { fleet.stop() }
        let key = try #require(
            try String(contentsOfFile: fleet.configPath("keyless"), encoding: .utf8).split(separator: "\n")
                .first { $0.hasPrefix("identity_file = ") }?.split(separator: "\"").dropFirst().first.map(String.init))
        try FileIO.rename(key, to: key + ".away")
        var output = try await fleet.client("keyless")
        #expect(output.exitCode == Self.localFailure, "\(output.standardError)")
        #expect(output.standardError.contains("local-failure: "), "\(output.standardError)")
        #expect(output.standardError.contains("check identity_file \(key)"), "\(output.standardError)")
        #expect(try fleet.state("keyless").failed == nil, "no generation was given up")
        let progress = try #require(try RunProgress.load(stateDirectory: fleet.stateDirectory("keyless")))
        #expect(progress.outcome == "local-failure" && progress.exitStatus == Self.localFailure)

        try FileIO.writeAtomically(Array("not a key\n".utf8), to: key, mode: 0o600)
        output = try await fleet.client("keyless")
        #expect(output.exitCode == Self.localFailure, "\(output.standardError)")
        #expect(output.standardError.contains("is not an unencrypted private key"), "\(output.standardError)")

        try FileIO.rename(key + ".away", to: key)
        output = try await fleet.client("keyless")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
    }

    @Test func aFullOrReadOnlyStateDirectoryIsALocalFailureThatFailsTheUnitAndIsTriedAgain() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        let state = try Self.mountSmallStateDirectory("alpha", of: fleet)
        defer { _ = try? TestCommand.run("/bin/umount", [state]) }
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        let good = try #require(try fleet.profileGeneration("alpha"))

        // Generation 2 holds 4 MiB of zeros: a tiny download, too big to extract on 1 MiB.
        let padding = fleet.fixture.repository + "/hosts/alpha/padding.bin"
        #expect(FileManager.default.createFile(atPath: padding, contents: Data(count: 4 << 20)))
        try await fleet.publish()
        var output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.localFailure, "\(output.standardError)")
        #expect(output.standardError.contains("local-failure: cannot extract the snapshot"), "\(output.standardError)")
        #expect(output.standardError.contains("No space left on device"))
        #expect(output.standardError.contains("a problem on this host"))
        var report = try #require(try fleet.lastReport("alpha"))
        #expect(report.state == .localFailure && report.generation == 2, "\(report)")
        #expect(report.reason?.contains("No space left on device") == true)
        var current = try fleet.state("alpha")
        #expect(current.applied?.generation == 1 && current.failed == nil, "not given up: tried again next time")
        #expect(try fleet.profileGeneration("alpha")?.system == good.system)
        #expect(try FileIO.listDirectory(state + "/generations").sorted() == ["1"], "nothing half-extracted is left")

        let rows = try await status(fleet)
        let alpha = try #require(rows["alpha"])
        #expect(alpha.lastResult == "local-failure" && alpha.state == .failed && alpha.failedGeneration == 2)
        #expect(alpha.reason?.hasPrefix("local failure on the host: ") == true, "\(alpha.reason ?? "")")
        #expect(alpha.appliedGeneration == 1)

        // Generation 3 holds 2 MiB of random bytes: the download itself does not fit. Not "unreachable".
        var random = [UInt8](repeating: 0, count: 2 << 20)
        for index in random.indices { random[index] = UInt8.random(in: 0...255) }
        #expect(FileManager.default.createFile(atPath: padding, contents: Data(random)))
        try await fleet.publish()
        output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.localFailure, "\(output.standardError)")
        #expect(output.standardError.contains("the snapshot cannot be stored here"), "\(output.standardError)")
        #expect(output.standardError.contains("No space left on device"))
        report = try #require(try fleet.lastReport("alpha"))
        #expect(report.state == .localFailure && report.generation == 3)
        #expect(try FileIO.listDirectory(state + "/generations").sorted() == ["1"])

        // A state directory that cannot be written at all.
        #expect(try TestCommand.run("/bin/mount", ["-o", "remount,ro", state]).succeeded)
        output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.localFailure, "\(output.standardError)")
        #expect(output.standardError.contains("Read-only file system"), "\(output.standardError)")
        #expect(output.standardError.contains("local-failure: cannot prepare the state directory"))

        // Room again: the next run applies the newest generation, and nothing was lost on the way.
        #expect(try TestCommand.run("/bin/mount", ["-o", "remount,rw,size=64m", state]).succeeded)
        output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        current = try fleet.state("alpha")
        #expect(current.applied?.generation == 3 && current.failed == nil)
        #expect(try fleet.lastReport("alpha")?.state == .applied)

        // The units fail on it (only applied, unreachable and locked are successes besides 0).
        #expect(!SystemdUnits.successExitStatuses.contains(Self.localFailure))
    }

    /// The state directory fills while the system builds (its builder fills it, as anything else on the
    /// machine could): writing the activation journal fails with ENOSPC. Before, that was a failed generation,
    /// never tried again; it is a local failure, undone, and the next run applies the same generation.
    @Test func aStateDirectoryThatFillsDuringTheBuildIsALocalFailureNotAFailedGeneration() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        let state = try Self.mountSmallStateDirectory("alpha", of: fleet)
        defer { _ = try? TestCommand.run("/bin/umount", [state]) }
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        let good = try #require(try fleet.profileGeneration("alpha"))

        let filler = state + "/filler"
        try fleet.fixture.write(
            "hosts/alpha/flake.nix",
            ToySystem.flake(
                host: "alpha", name: "filling", script: "/bin/dd if=/dev/zero of=\(filler) bs=4k 2>/dev/null || true"))
        try await fleet.publish()
        var output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.localFailure, "\(output.standardError)")
        #expect(output.standardError.contains("cannot write the activation journal"), "\(output.standardError)")
        #expect(output.standardError.contains("No space left on device"))
        var current = try fleet.state("alpha")
        #expect(current.applied?.generation == 1 && current.failed == nil, "\(current)")
        #expect(try fleet.profileGeneration("alpha")?.system == good.system, "the profile was set back")
        #expect(try FileStatus.of(state + "/pending.json") == nil)
        #expect(
            !fleet.activations("alpha").contains { $0.contains("filling") },
            "the new system was never activated: \(fleet.activations("alpha"))")
        let report = try #require(try fleet.lastReport("alpha"))
        #expect(report.state == .localFailure && report.generation == 2, "\(report)")

        // Space again: the same generation is applied (the build is in the store now, so nothing fills).
        unlink(filler)
        output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        current = try fleet.state("alpha")
        #expect(current.applied?.generation == 2 && current.failed == nil)
    }
}

extension ClientRunTests {
    /// Nix itself running out of space (its store, or its build directory) is the machine's failure too, not
    /// the generation's: a build whose failure says "No space left on device" is a local failure, tried again.
    @Test func aBuildThatRunsOutOfSpaceIsALocalFailureNotAFailedGeneration() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        try fleet.fixture.write(
            "hosts/alpha/flake.nix",
            ToySystem.flake(
                host: "alpha", name: "full",
                script: "echo 'error: writing to file: No space left on device' >&2; exit 1"))
        try await fleet.publish()
        let output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.localFailure, "\(output.standardError)")
        #expect(output.standardError.contains("No space left on device"))
        let report = try #require(try fleet.lastReport("alpha"))
        #expect(report.state == .localFailure && report.generation == 2, "\(report)")
        let state = try fleet.state("alpha")
        #expect(state.applied?.generation == 1 && state.failed == nil, "not given up: tried again next time")
    }
}

extension ClientRunSuite {
    /// Mounts a real 1 MiB tmpfs as the host's state directory (the caller unmounts it) and returns its path.
    static func mountSmallStateDirectory(_ host: String, of fleet: ClientFleet) throws -> String {
        let state = fleet.stateDirectory(host)
        try FileIO.createDirectories(state, mode: 0o755)
        let mount = try TestCommand.run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", state])
        try #require(mount.succeeded, "\(mount.standardError)")
        return state
    }
}
