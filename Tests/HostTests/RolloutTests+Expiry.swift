import CommandRunner
import FleetProtocol
import FleetTestSupport
import Foundation
import Publishing
import SQLiteKit
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
}
