import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import ServerStore
import Testing

/// Disaster recovery with real hosts: after the server loses state.db and chroots, the next generations are
/// ones the hosts accept, without touching the hosts; a snapshot damaged on disk is written again. Host names
/// are this suite's own.
@Suite(.serialized) struct RecoveryTests: ClientRunSuite {
    /// Gives `host` a new generation by changing its motd, publishes, and has the host apply it.
    static func applyNewGeneration(_ host: String, _ motd: String, fleet: ClientFleet) async throws {
        try fleet.fixture.write("hosts/\(host)/configuration.nix", "{ motd = [ \"\(motd)\" ]; }\n")
        try await fleet.publish()
        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
    }

    @Test func losingStateAndAChrootHealsOnceTheHostHasReported() async throws {
        let fleet = try await ClientFleet.start(hosts: ["rcvalpha", "rcvbeta"])
        defer { fleet.stop() }
        #expect(try await fleet.client("rcvbeta").exitCode == Self.applied)
        for motd in ["two", "three"] { try await Self.applyNewGeneration("rcvalpha", motd, fleet: fleet) }
        #expect(try fleet.state("rcvalpha").applied?.generation == 3)
        let system = try fleet.profileGeneration("rcvalpha")?.system

        // The server loses state.db and alpha's chroot; `fleet setup` makes the chroot again, empty.
        try FileIO.removeTree(fleet.fixture.stateDirectory + "/" + StateDatabase.fileName)
        try FileIO.removeTree(try fleet.layout("rcvalpha").directory)
        _ = try await ClientFleet.check(fleet.fixture.fleet(["setup"]), "fleet setup")

        // With no trace left on the server, the first publish can only start alpha at 1: alpha refuses it as a
        // downgrade, keeps its system, and says what it has in its heartbeat. beta's chroot kept its generation.
        try await fleet.publish()
        #expect(try fleet.manifest("rcvalpha").generation == 1 && fleet.manifest("rcvbeta").generation == 1)
        var output = try await fleet.client("rcvalpha")
        #expect(
            output.exitCode == Self.refused && output.standardError.contains("downgrade"), "\(output.standardError)")
        #expect(try fleet.profileGeneration("rcvalpha")?.system == system)
        #expect(try await fleet.client("rcvbeta").exitCode == Self.unchanged)

        // The next publish reads it: the same tree, as generation 4, which alpha applies.
        let publish = try await ClientFleet.check(fleet.fixture.fleet(["publish"]), "fleet publish")
        #expect(
            (publish.standardOutput + publish.standardError).contains("reports generation 3, above the published 1"),
            "\(publish.standardOutput)")
        #expect(try fleet.manifest("rcvalpha").generation == 4 && fleet.manifest("rcvbeta").generation == 1)
        output = try await fleet.client("rcvalpha")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(try fleet.state("rcvalpha").applied?.generation == 4)
        #expect(try fleet.profileGeneration("rcvalpha")?.system == system, "the same configuration as before")
        // And it stays put: a publish with nothing changed makes no generation.
        try await fleet.publish()
        #expect(try fleet.manifest("rcvalpha").generation == 4)
        #expect(try await fleet.client("rcvalpha").exitCode == Self.unchanged)
    }

    @Test func afterLosingEverythingMinGenerationMakesTheFirstPublishAccepted() async throws {
        let fleet = try await ClientFleet.start(hosts: ["rcvgamma", "rcvdelta"])
        defer { fleet.stop() }
        for motd in ["two", "three", "four"] { try await Self.applyNewGeneration("rcvgamma", motd, fleet: fleet) }
        #expect(try await fleet.client("rcvdelta").exitCode == Self.applied)

        // state.db and the whole chroot root are gone (the server is rebuilt from the repository).
        try FileIO.removeTree(fleet.fixture.stateDirectory + "/" + StateDatabase.fileName)
        for host in ["rcvgamma", "rcvdelta"] { try FileIO.removeTree(try fleet.layout(host).directory) }
        _ = try await ClientFleet.check(fleet.fixture.fleet(["setup"]), "fleet setup")

        // Values that are no generation are refused before anything is written.
        for value in ["0", "9007199254740993", "-1", "x"] {
            let output = try await fleet.fixture.fleet(["publish", "--min-generation", value])
            #expect(output.exitCode != 0, "--min-generation \(value)")
            #expect(try FileStatus.of(try fleet.layout("rcvgamma").manifest) == nil)
        }
        let output = try await ClientFleet.check(
            fleet.fixture.fleet(["publish", "--min-generation", "10"]), "fleet publish --min-generation 10")
        #expect(output.exitCode == 0)
        for host in ["rcvgamma", "rcvdelta"] {
            #expect(try fleet.manifest(host).generation == 10)
            let run = try await fleet.client(host)
            #expect(run.exitCode == Self.applied, "\(host): \(run.standardError)")
            #expect(try fleet.state(host).applied?.generation == 10)
        }
        // --min-generation never lowers anything: below the current generations it changes nothing.
        try fleet.fixture.write("hosts/rcvdelta/configuration.nix", "{ motd = [ \"after\" ]; }\n")
        _ = try await ClientFleet.check(
            fleet.fixture.fleet(["publish", "--min-generation", "2"]), "fleet publish --min-generation 2")
        #expect(try fleet.manifest("rcvdelta").generation == 11 && fleet.manifest("rcvgamma").generation == 10)
    }

    @Test func aSnapshotDamagedOnDiskIsWrittenAgainAndTheHostStillApplies() async throws {
        let fleet = try await ClientFleet.start(hosts: ["rcvepsilon"])
        defer { fleet.stop() }
        let manifest = try fleet.manifest("rcvepsilon")
        let path = try fleet.layout("rcvepsilon").snapshot(manifest.generation)
        let original = try FileIO.read(path)
        let status = try #require(try FileStatus.of(path))

        // Same size, other bytes (a flipped byte in the middle): a stat cannot see it, the digest can.
        var damaged = original
        damaged[damaged.count / 2] ^= 0xff
        try Self.overwriteInPlace(path, damaged)
        #expect(try FileStatus.of(path)?.size == status.size)
        // A dry run previews the repair: the host keeps its generation, and nothing is written.
        let (dryStatus, rows) = try await ClientBuildTests.publishJSON(fleet.fixture, ["--dry-run"])
        #expect(dryStatus == 0)
        let row = try #require(rows.first { $0["host"] as? String == "rcvepsilon" }, "\(rows)")
        #expect(row["status"] as? String == "unchanged", "\(row)")
        #expect((row["generation"] as? NSNumber)?.uint64Value == manifest.generation, "\(row)")
        #expect(((row["warnings"] as? [String]) ?? []).contains { $0.contains("a publish writes it again") }, "\(row)")
        #expect(try FileIO.read(path) == damaged, "a dry run writes nothing")
        var output = try await ClientFleet.check(fleet.fixture.fleet(["publish"]), "fleet publish")
        #expect(
            (output.standardOutput + output.standardError).contains("did not match its manifest"),
            "\(output.standardOutput)")
        #expect(try FileIO.read(path) == original, "the same bytes as the manifest signs")
        #expect(try fleet.manifest("rcvepsilon").generation == manifest.generation, "no new generation")
        let store = try StateStore(stateDirectory: fleet.fixture.stateDirectory)
        #expect(try store.events(host: try HostName("rcvepsilon")).contains { $0.kind == "snapshot-repaired" })
        #expect(try await fleet.client("rcvepsilon").exitCode == Self.applied)

        // With --verify every snapshot is read whole; intact ones stay as they are, and say nothing.
        output = try await ClientFleet.check(fleet.fixture.fleet(["publish", "--verify"]), "fleet publish --verify")
        #expect(!(output.standardOutput + output.standardError).contains("manifest"), "\(output.standardOutput)")
        try Self.overwriteInPlace(path, damaged)
        output = try await ClientFleet.check(fleet.fixture.fleet(["publish", "--verify"]), "fleet publish --verify")
        #expect(
            (output.standardOutput + output.standardError).contains("did not match its manifest"),
            "\(output.standardOutput)")
        #expect(try FileIO.read(path) == original)
        #expect(try await fleet.client("rcvepsilon").exitCode == Self.unchanged)
    }

    /// Writes `bytes` over the file's own bytes, keeping its inode, owner and mode (damage, not a replacement).
    static func overwriteInPlace(_ path: String, _ bytes: [UInt8]) throws {
        let handle = try #require(FileHandle(forWritingAtPath: path))
        defer { try? handle.close() }
        try handle.write(contentsOf: Data(bytes))
    }
}
