import FleetFiles
public import FleetProtocol
public import Foundation
public import Inventory
public import ServerStore

/// Keeps manifests from expiring (freeze protection): re-signs a manifest with less than half of
/// `manifest_ttl_seconds` left, with the same generation, snapshot, content and publish time and a new expiry.
///
/// A host sees the same generation and content again, so it neither downloads nor applies anything; only the
/// expiry moves. A manifest is re-signed only when it verifies with the fleet key: the server never signs
/// what it did not sign itself (a chroot manifest changed by hand, or signed by a replaced key, is left alone
/// and named, to be published again).
public struct ManifestRenewal: Sendable {
    let signingKey: SigningKey
    let ttlSeconds: Int
    let now: Date
    /// Say what is due without writing anything (`fleet publish --refresh --dry-run`).
    let dryRun: Bool

    public init(signingKey: SigningKey, ttlSeconds: Int, now: Date, dryRun: Bool = false) {
        self.signingKey = signingKey
        self.ttlSeconds = ttlSeconds
        self.now = now
        self.dryRun = dryRun
    }

    /// What the renewal did to one host's manifest.
    public struct Result: Codable, Sendable, Equatable {
        public var host: String
        /// The generation its manifest names; nil without a manifest.
        public var generation: UInt64?
        /// The manifest's expiry after this run (nil: none, or no manifest).
        public var expiresAt: String?
        /// Whether it was re-signed (with `--dry-run`: whether it would be).
        public var resigned: Bool
        /// Why it could not be re-signed.
        public var problem: String?
    }

    /// `bytes` re-signed with a new expiry when it is due; nil when it is not.
    ///
    /// - Throws: when `bytes` is not a manifest this fleet key signed.
    public func renewed(_ bytes: [UInt8]) throws -> [UInt8]? {
        let manifest = try Manifest.verify(bytes, with: signingKey.publicKey)
        guard manifest.needsRenewal(ttlSeconds: ttlSeconds, now: now) else { return nil }
        return try manifest.renewed(ttlSeconds: ttlSeconds, now: now).signed(with: signingKey)
    }

    /// Re-signs the manifest in `layout`'s chroot when it is due (atomically, like a publish writes it).
    public func renewChrootManifest(_ layout: ChrootLayout) -> Result {
        var result = Result(host: layout.host.value, resigned: false)
        do {
            guard try FileStatus.of(layout.manifest) != nil else { return result }
            let bytes = try FileIO.readNoFollow(layout.manifest, limit: Manifest.sizeLimit)
            let current = try Manifest.readUnverified(bytes)
            (result.generation, result.expiresAt) = (current.generation, current.expiresAt)
            guard let renewed = try renewed(bytes) else { return result }
            result.resigned = true
            if !dryRun {
                try FileIO.writeAtomically(renewed, to: layout.manifest, mode: 0o644, owner: 0, group: 0)
                result.expiresAt = try Manifest.readUnverified(renewed).expiresAt
            }
        } catch {
            result.problem =
                "\(layout.manifest) was not re-signed: \(error); `fleet publish \(layout.host)` writes a new one"
        }
        return result
    }

    /// `fleet publish --refresh`: renews the chroot manifest of each of `hosts`, nothing else (no tree resolution,
    /// no build, no new generation). Callers hold the publish lock.
    public static func refresh(
        _ hosts: [HostConfiguration], configuration: FleetConfiguration, signingKey: SigningKey, now: Date,
        dryRun: Bool = false
    ) -> [Result] {
        let renewal = ManifestRenewal(
            signingKey: signingKey, ttlSeconds: configuration.server.manifestTTLSeconds, now: now, dryRun: dryRun)
        return hosts.map { host in
            renewal.renewChrootManifest(ChrootLayout(root: configuration.server.chrootRoot, host: host.name))
        }
    }
}
