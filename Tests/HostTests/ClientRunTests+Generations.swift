import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import HostAgent
import Publishing
import SQLiteKit
import ServerStore
import Testing

/// Generations are 1 … 2^53 wherever they are read or written: a validly signed manifest, a snapshot name, a
/// state.db row or a host's report outside that is refused by name, never trapped on, and one host's bad value
/// never stops publishing or review for the others.
extension ClientRunTests {
    static let hugeGeneration = UInt64(Int64.max)

    @Test(arguments: [0, Generation.maximum + 1, hugeGeneration])
    func aManifestOutsideTheGenerationBoundIsRefused(generation: UInt64) throws {
        let key = try SigningKey(generatingWithName: "fleet-1")
        var manifest = Manifest(
            host: try HostName("alpha"), generation: generation, publishedAt: "2026-12-04T00:00:00Z",
            sourceCommit: "none", snapshot: .init(path: "/snapshots/1.tar.zst", size: 1, sha256: ""),
            contentDigest: "", operation: .switch, attribute: "alpha")
        #expect(
            throws: ProtocolError.malformedManifest(
                "its generation \(generation) is not a generation (1 to 2^53 = 9007199254740992)")
        ) {
            try Manifest.verify(try manifest.signed(with: key), with: key.publicKey)
        }
        manifest.generation = Generation.maximum
        #expect(
            try Manifest.verify(try manifest.signed(with: key), with: key.publicKey).generation == Generation.maximum)
    }

    @Test func generationsOutsideTheBoundNeverReachAHostNorStopTheOthers() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha", "beta"])
        defer { fleet.stop() }
        let good = try fleet.manifest("alpha")

        // A host with no state is offered generation 0, then 2^63-1, both validly signed: refused by name.
        for generation in [0, Self.hugeGeneration] {
            var manifest = good
            manifest.generation = generation
            try fleet.plantManifest("alpha", manifest)
            let output = try await fleet.client("alpha")
            #expect(output.exitCode == Self.refused, "\(output.standardError)")
            #expect(
                output.standardError.contains("generation \(generation) is not a generation"), "\(output.standardError)"
            )
            #expect(try fleet.state("alpha").applied == nil && fleet.activations("alpha").isEmpty)
            #expect(try fleet.state("alpha").lastSeen == nil, "an invalid generation is never remembered as seen")
        }
        try fleet.plantManifest("alpha", good)
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        #expect(try await fleet.client("beta").exitCode == Self.applied)

        // alpha's chroot now holds a signed manifest and a snapshot at 2^63-1, and alpha's logs a report and a
        // heartbeat about it: the server must neither trap nor let it stop beta.
        var huge = good
        huge.generation = Self.hugeGeneration
        try fleet.plantManifest("alpha", huge)
        try fleet.plant("alpha", ChrootLayout.snapshotPathInChroot(Self.hugeGeneration), [0])
        var report = RunReport(
            host: "alpha", state: .applied, startedAt: UTCTime.iso(Date()), finishedAt: UTCTime.iso(Date()))
        report.generation = Self.hugeGeneration
        report.previousGeneration = 1
        let logs = try fleet.layout("alpha").logs
        try FileIO.writeAtomically(
            report.encoded(), to: logs + "/report-\(UTCTime.compact(Date()))-g\(Self.hugeGeneration).json")
        let beat = Heartbeat(
            host: "alpha", at: UTCTime.iso(Date()), appliedGeneration: Self.hugeGeneration,
            seenGeneration: Self.hugeGeneration, failedGeneration: nil, lastResult: .applied, reason: nil,
            rebootNeeded: false)
        try FileIO.writeAtomically(beat.encoded(), to: logs + "/heartbeat.json")
        var rows = try await status(fleet)
        #expect(rows["alpha"]?.appliedGeneration == 1 && rows["beta"]?.appliedGeneration == 1)
        #expect(rows["alpha"]?.warnings.contains { $0.contains("\(Self.hugeGeneration) is not a generation") } == true)

        for host in ["alpha", "beta"] {
            try fleet.fixture.write("hosts/\(host)/configuration.nix", "{ motd = [ \"second\" ]; }\n")
        }
        var output = try await fleet.fixture.fleet(["publish"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(try fleet.manifest("alpha").generation == 2 && fleet.manifest("beta").generation == 2)

        // state.db holding a value that is no generation (edited by hand): alpha is refused, naming it; beta
        // still publishes, and review still works for both.
        let database = try SQLiteDatabase(path: fleet.fixture.stateDirectory + "/state.db")
        try database.query(
            "UPDATE hosts SET last_generation = ? WHERE name = 'alpha'", [.integer(Int64(Self.hugeGeneration))])
        for host in ["alpha", "beta"] {
            try fleet.fixture.write("hosts/\(host)/configuration.nix", "{ motd = [ \"third\" ]; }\n")
        }
        output = try await fleet.fixture.fleet(["publish"])
        #expect(output.exitCode == 1)
        let said = output.standardOutput + output.standardError
        #expect(said.contains("alpha") && said.contains("not a generation") && said.contains("state.db"), "\(said)")
        #expect(try fleet.manifest("alpha").generation == 2 && fleet.manifest("beta").generation == 3)
        #expect(try await fleet.client("beta").exitCode == Self.applied)
        rows = try await status(fleet)
        #expect(rows["beta"]?.appliedGeneration == 3 && rows["beta"]?.state == .upToDate)
        #expect(rows["alpha"] != nil)
    }
}
