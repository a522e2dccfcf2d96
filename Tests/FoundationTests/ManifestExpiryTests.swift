import FleetProtocol
import Foundation
import Testing

/// Freeze protection, the pure pieces: a manifest's expiry, when the server re-signs it, when a host calls it
/// stale, and that adding it needs no format bump (older readers ignore the key, older manifests stay byte-equal).
@Suite("Manifest expiry")
struct ManifestExpiryTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let week = 7 * 86400

    static func sample(expiresAt: String?) throws -> Manifest {
        Manifest(
            host: try HostName("frz-unit"), generation: 3, publishedAt: "2026-11-22T00:00:00Z", sourceCommit: "abc",
            snapshot: .init(path: "/snapshots/3.tar.zst", size: 42, sha256: String(repeating: "0", count: 64)),
            contentDigest: "d", operation: .switch, attribute: "frz-unit", expiresAt: expiresAt)
    }

    static func iso(_ offset: Int) -> String { UTCTime.iso(now.addingTimeInterval(TimeInterval(offset))) }

    @Test func aManifestIsStaleFromItsExpiryOn() throws {
        let seconds = Int64(Self.now.timeIntervalSince1970)
        let fresh = try Self.sample(expiresAt: Self.iso(1))
        #expect(ManifestPolicy.staleness(of: fresh, now: seconds, expiryRequired: true) == nil)
        for offset in [0, -1, -Self.week] {
            let expired = try Self.sample(expiresAt: Self.iso(offset))
            let reason = try #require(ManifestPolicy.staleness(of: expired, now: seconds, expiryRequired: false))
            #expect(reason.contains("frz-unit") && reason.contains("expired at \(Self.iso(offset))"), "\(reason)")
        }
    }

    @Test func aManifestWithoutExpiryIsStaleOnlyOnceExpiriesWereSeen() throws {
        let legacy = try Self.sample(expiresAt: nil)
        let seconds = Int64(Self.now.timeIntervalSince1970)
        #expect(ManifestPolicy.staleness(of: legacy, now: seconds, expiryRequired: false) == nil)
        let reason = try #require(ManifestPolicy.staleness(of: legacy, now: seconds, expiryRequired: true))
        #expect(reason.contains("has no expiry"), "\(reason)")
    }

    @Test(arguments: ["tomorrow", "2026-13-01T00:00:00Z", "", "2026-11-22 00:00:00"])
    func anExpiryThatIsNotAUTCTimeIsRefused(expiry: String) throws {
        let manifest = try Self.sample(expiresAt: expiry)
        let refusal = try #require(ManifestPolicy.refusal(of: manifest, for: manifest.host, lastSeen: nil))
        #expect(refusal.contains("is not a UTC time"), "\(refusal)")
        #expect(manifest.needsRenewal(ttlSeconds: Self.week, now: Self.now), "the server replaces it")
    }

    @Test func renewalIsDueWithLessThanHalfTheTTLLeft() throws {
        let ttl = Self.week
        #expect(try Self.sample(expiresAt: nil).needsRenewal(ttlSeconds: ttl, now: Self.now))
        #expect(try Self.sample(expiresAt: Self.iso(ttl / 2 - 1)).needsRenewal(ttlSeconds: ttl, now: Self.now))
        #expect(try !Self.sample(expiresAt: Self.iso(ttl / 2)).needsRenewal(ttlSeconds: ttl, now: Self.now))
        #expect(try !Self.sample(expiresAt: Self.iso(ttl)).needsRenewal(ttlSeconds: ttl, now: Self.now))
    }

    @Test func aRenewedManifestDiffersOnlyInItsExpiryAndIsTheSameToTheHost() throws {
        let old = try Self.sample(expiresAt: Self.iso(60))
        let renewed = old.renewed(ttlSeconds: Self.week, now: Self.now)
        #expect(renewed.expiresAt == Self.iso(Self.week))
        var same = renewed
        same.expiresAt = old.expiresAt
        #expect(same == old)
        // The host's memory of it does not change, so neither does what it decides.
        #expect(ManifestPolicy.Seen(renewed) == ManifestPolicy.Seen(old))
        #expect(ManifestPolicy.refusal(of: renewed, for: old.host, lastSeen: ManifestPolicy.Seen(old)) == nil)
    }

    /// No format bump: an expiry-less manifest signs the same bytes as before the field existed, and a reader
    /// that does not know the key (an older client) decodes a manifest that has it.
    @Test func theExpiryNeedsNoFormatBump() throws {
        let key = try SigningKey(generatingWithName: "fleet-1")
        let legacy = try Self.sample(expiresAt: nil)
        let payload = String(decoding: try legacy.payload(), as: UTF8.self)
        #expect(!payload.contains("expiresAt"))
        let withExpiry = try Self.sample(expiresAt: Self.iso(Self.week))
        #expect(withExpiry.format == Manifest.currentFormat && Manifest.currentFormat == 1)
        let file = try withExpiry.signed(with: key)
        #expect(try Manifest.verify(file, with: key.publicKey).expiresAt == Self.iso(Self.week))

        /// What a client before expiries decodes (its Manifest had no such key).
        struct OlderReader: Decodable {
            var format: Int
            var host: String
            var generation: UInt64
        }
        let newline = try #require(file.firstIndex(of: 0x0a))
        let older = try JSONDecoder().decode(OlderReader.self, from: Data(file[..<newline]))
        #expect(older.format == 1 && older.generation == 3 && older.host == "frz-unit")
    }
}
