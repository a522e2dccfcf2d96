import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Publishing
import SQLiteKit
import ServerStore
import Testing

/// Freeze protection in a rollout: a manifest is staged when it is published and delivered when its ring is
/// reached, maybe days later; delivery re-signs one that is due, so the ring's hosts never get a stale one.
extension RolloutTests {
    @Test func aStagedManifestIsResignedWhenItsRingIsReached() async throws {
        let (fleet, _) = try await Self.startWithRings()
        defer { fleet.stop() }
        let fixture = fleet.fixture
        try fixture.write("common/base.nix", "{ motd = [ \"rollout expiry\" ]; }\n")
        #expect(try await ClientBuildTests.publishJSON(fixture).0 == 0)

        // The wave's staged manifest as though staged six days ago: an hour of its week left.
        let now = Int64(Date().timeIntervalSince1970)
        var staged: Manifest
        do {
            let database = try SQLiteDatabase(path: fixture.stateDirectory + "/state.db")
            let rows = try database.query("SELECT manifest FROM rollout_hosts WHERE host = 'ringwave'")
            guard case .blob(let bytes) = try #require(rows.first)["manifest"] else {
                Issue.record("no staged manifest for ringwave")
                return
            }
            staged = try Manifest.readUnverified(bytes)
            #expect(try staged.generation == 2 && Self.generation(fixture, "ringwave") == 1)
            staged.expiresAt = UTCTime.iso(Date().addingTimeInterval(3600))
            let key = try SigningKeyFile.load(stateDirectory: fixture.stateDirectory)
            _ = try database.query(
                "UPDATE rollout_hosts SET manifest = ? WHERE host = 'ringwave'", [.blob(try staged.signed(with: key))])
        }

        let step = try await Self.rollout(fixture, ["promote", "wave"])
        #expect(step.exitCode == 0, "\(step)")
        let delivered = try fixture.verifiedManifest("ringwave")
        #expect(delivered.generation == staged.generation && delivered.contentDigest == staged.contentDigest)
        #expect(try #require(delivered.expirySeconds) > now + 6 * 86400, "\(delivered.expiresAt ?? "none")")
        #expect(try await fleet.client("ringwave").exitCode == Self.applied)
    }

    /// A staged generation's snapshot damaged on disk (same size) while it waits for its ring: the next publish
    /// finds it and writes it again from the same tree, so the ring's hosts never get a snapshot they refuse.
    @Test func aDamagedStagedSnapshotIsWrittenAgainBeforeItsRingIsReached() async throws {
        let (fleet, _) = try await Self.startWithRings()
        defer { fleet.stop() }
        let fixture = fleet.fixture
        try fixture.write("common/base.nix", "{ motd = [ \"rollout damage\" ]; }\n")
        #expect(try await ClientBuildTests.publishJSON(fixture).0 == 0)
        #expect(try Self.generation(fixture, "ringwave") == 1, "generation 2 is staged for the wave")
        let path = try fixture.layout("ringwave").directory + ChrootLayout.snapshotPathInChroot(2)
        let original = try FileIO.read(path)
        var damaged = original
        damaged[damaged.count / 2] ^= 0xFF
        try RecoveryTests.overwriteInPlace(path, damaged)

        let (status, rows) = try await ClientBuildTests.publishJSON(fixture, ["--verify"])
        #expect(status == 0, "\(rows)")
        let wave = try #require(rows.first { $0["host"] as? String == "ringwave" })
        #expect(wave["status"] as? String == "staged", "\(wave)")
        let warnings = (wave["warnings"] as? [String]) ?? []
        #expect(
            warnings.contains { $0.contains("(staged for a later ring) did not match its manifest") }, "\(warnings)")
        #expect(try FileIO.read(path) == original)
        let store = try StateStore(stateDirectory: fixture.stateDirectory)
        #expect(try store.events(host: try HostName("ringwave")).contains { $0.kind == "snapshot-repaired" })

        let step = try await Self.rollout(fixture, ["promote", "wave"])
        #expect(step.exitCode == 0, "\(step)")
        #expect(try Self.generation(fixture, "ringwave") == 2)
        #expect(try await fleet.client("ringwave").exitCode == Self.applied)
    }
}
