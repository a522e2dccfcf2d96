import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import Publishing
import ServerStore
import Testing

/// Freeze protection with a real sshd, real clients and the real publisher: an expired manifest is refused and
/// shown as stale, `fleet publish --refresh` re-signs without a new generation (and the host neither downloads
/// nor applies again), and a manifest without expiry is accepted only until the host has seen one with.
@Suite("Freeze protection: expiring manifests", .serialized)
struct FreezeProtectionTests: ClientRunSuite {
    static var stale: Int32 { RunOutcome.stale.exitStatus }

    /// `offset` seconds from now, as a manifest writes it.
    static func iso(_ offset: TimeInterval) -> String { UTCTime.iso(Date().addingTimeInterval(offset)) }

    @Test func anExpiredManifestIsRefusedAsStaleShownByStatusAndARefreshEndsIt() async throws {
        let host = "frz-expired"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        #expect(try await fleet.client(host).exitCode == Self.applied)
        let published = try fleet.manifest(host)
        let expiry = try #require(published.expiresAt.flatMap(UTCTime.parseISO))
        #expect(expiry > Int64(Date().timeIntervalSince1970) + 6 * 86400, "a week by default")
        #expect(try fleet.state(host).manifestsExpire == true)
        let activations = fleet.activations(host)

        // A validly signed manifest past its expiry (what a stale mirror would serve).
        var expired = published
        expired.expiresAt = Self.iso(-3600)
        try fleet.plantManifest(host, expired)
        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.stale, "\(output.standardError)")
        #expect(
            output.standardError.contains("for \(host) expired at \(expired.expiresAt ?? "")")
                && output.standardError.contains("(server 127.0.0.1 port \(fleet.sshd.port))"),
            "\(output.standardError)")
        #expect(fleet.activations(host) == activations, "nothing applied")
        #expect(try fleet.state(host).applied?.generation == published.generation)
        #expect(try fleet.lastReport(host)?.state == .stale)

        var status = try await self.status(fleet)[host]
        #expect(status?.state == .staleManifest && status?.staleManifest == true, "\(String(describing: status))")
        #expect(status?.reason?.contains("expired at") == true, "\(String(describing: status?.reason))")
        let table = try await fleet.fixture.fleet(["status"])
        #expect(table.standardOutput.contains("stale manifest"), "\(table.standardOutput)")

        // The server re-signs it (the timer's command): same generation, a new expiry; the host is fine again.
        let refresh = try await fleet.fixture.fleet(["publish", "--refresh"])
        #expect(refresh.exitCode == 0, "\(refresh.standardError)")
        #expect(refresh.standardOutput.contains("re-signed 1 of 1 manifests"), "\(refresh.standardOutput)")
        let renewed = try fleet.manifest(host)
        #expect(renewed.generation == published.generation && renewed.snapshot == published.snapshot)
        #expect(try await fleet.client(host).exitCode == Self.unchanged)
        status = try await self.status(fleet)[host]
        #expect(status?.state == .upToDate && status?.staleManifest == false, "\(String(describing: status))")
    }

    @Test func aRefreshResignsWithoutANewGenerationAndTheHostNeitherDownloadsNorApplies() async throws {
        let host = "frz-refresh"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        #expect(try await fleet.client(host).exitCode == Self.applied)
        let published = try fleet.manifest(host)
        let activations = fleet.activations(host)
        let generations = try FileIO.listDirectory(fleet.stateDirectory(host) + "/generations").sorted()

        // Not due (a week left): a refresh and a publish leave the manifest's bytes alone.
        let before = try FileIO.read(try fleet.layout(host).manifest)
        let idle = try await fleet.fixture.fleet(["publish", "--refresh"])
        #expect(idle.exitCode == 0 && idle.standardOutput.contains("re-signed 0 of 1 manifests"), "\(idle)")
        try await fleet.publish()
        #expect(try FileIO.read(try fleet.layout(host).manifest) == before)

        // Due (an hour left of a week): re-signed by --refresh, without resolving or building anything.
        var nearExpiry = published
        nearExpiry.expiresAt = Self.iso(3600)
        try fleet.plantManifest(host, nearExpiry)
        let dry = try await fleet.fixture.fleet(["publish", "--refresh", "--dry-run", "--json"])
        let planned = try JSONDecoder().decode([ManifestRenewal.Result].self, from: Data(dry.standardOutput.utf8))
        #expect(planned.map(\.resigned) == [true] && planned.first?.expiresAt == nearExpiry.expiresAt)
        #expect(try fleet.manifest(host) == nearExpiry, "a dry run writes nothing")
        let refresh = try await fleet.fixture.fleet(["publish", "--refresh"])
        #expect(refresh.exitCode == 0 && refresh.standardOutput.contains("re-signed 1 of 1 manifests"), "\(refresh)")
        let renewed = try fleet.manifest(host)
        var withoutExpiry = renewed
        withoutExpiry.expiresAt = published.expiresAt
        #expect(withoutExpiry == published, "the same generation, snapshot, content and publish time")
        #expect(try #require(renewed.expirySeconds) > Int64(Date().timeIntervalSince1970) + 6 * 86400)

        let reports = try fleet.uploaded(host).filter { $0.hasPrefix("report-") }
        let run = try await fleet.client(host)
        #expect(run.exitCode == Self.unchanged, "\(run.standardError)")
        #expect(fleet.activations(host) == activations, "not applied again")
        #expect(try FileIO.listDirectory(fleet.stateDirectory(host) + "/generations").sorted() == generations)
        #expect(!run.standardError.contains("downloading"), "\(run.standardError)")
        #expect(try fleet.uploaded(host).filter { $0.hasPrefix("report-") } == reports, "a heartbeat only")

        // An ordinary publish re-signs a due manifest of an unchanged host too, and says so.
        nearExpiry.expiresAt = Self.iso(60)
        try fleet.plantManifest(host, nearExpiry)
        let publish = try await fleet.fixture.fleet(["publish", "--json"])
        let results = try JSONDecoder().decode([PublishResult].self, from: Data(publish.standardOutput.utf8))
        #expect(results.map(\.status) == [.unchanged] && results.first?.resigned == true, "\(publish.standardOutput)")
        #expect(try fleet.manifest(host).generation == published.generation)
        #expect(try await fleet.client(host).exitCode == Self.unchanged)
        #expect(fleet.activations(host) == activations)
    }

    @Test func aManifestWithoutExpiryIsAcceptedOnlyUntilOneWithExpiryWasSeen() async throws {
        let host = "frz-legacy"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        // What a server before expiries published: a host that never saw an expiry applies it.
        var legacy = try fleet.manifest(host)
        legacy.expiresAt = nil
        try fleet.plantManifest(host, legacy)
        #expect(try await fleet.client(host).exitCode == Self.applied)
        #expect(try fleet.state(host).manifestsExpire == nil)
        let activations = fleet.activations(host)

        // The upgraded server re-signs it with an expiry (none is due at once); the host takes note.
        let refresh = try await fleet.fixture.fleet(["publish", "--refresh"])
        #expect(refresh.standardOutput.contains("re-signed 1 of 1 manifests"), "\(refresh.standardOutput)")
        #expect(try await fleet.client(host).exitCode == Self.unchanged)
        #expect(try fleet.state(host).manifestsExpire == true)

        // The pre-upgrade manifest replayed: refused as stale, nothing applied, and it stays refused.
        try fleet.plantManifest(host, legacy)
        for _ in 0..<2 {
            let output = try await fleet.client(host)
            #expect(output.exitCode == Self.stale, "\(output.standardError)")
            #expect(output.standardError.contains("has no expiry"), "\(output.standardError)")
        }
        #expect(fleet.activations(host) == activations)
        #expect(try fleet.state(host).manifestsExpire == true)
        #expect(try await self.status(fleet)[host]?.state == .staleManifest)
    }
}
