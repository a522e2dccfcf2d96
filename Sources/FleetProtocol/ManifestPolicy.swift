import NixKit

/// What a host requires of a manifest whose signature verified before it acts on it: one pure function, the
/// same rules wherever a manifest is accepted (`fleet-client run` and `check`), each with a unit test.
public enum ManifestPolicy {
    /// A manifest the host verified earlier: enough to recognise the same one, a forged twin, or an older one.
    public struct Seen: Codable, Sendable, Equatable {
        public var generation: UInt64
        public var contentDigest: String
        public var snapshotSHA256: String

        public init(generation: UInt64, contentDigest: String, snapshotSHA256: String) {
            self.generation = generation
            self.contentDigest = contentDigest
            self.snapshotSHA256 = snapshotSHA256
        }

        public init(_ manifest: Manifest) {
            self.init(
                generation: manifest.generation, contentDigest: manifest.contentDigest,
                snapshotSHA256: manifest.snapshot.sha256)
        }
    }

    /// Snapshots larger than this are refused before anything is downloaded.
    public static let snapshotLimit: Int64 = 4 << 30

    /// Why `manifest` must not be acted on by `host`, which last saw `lastSeen`; nil when it may.
    public static func refusal(of manifest: Manifest, for host: HostName, lastSeen: Seen?) -> String? {
        guard manifest.host == host else {
            return "the manifest is signed for host \(manifest.host), not for \(host) (a manifest copied from "
                + "another host's chroot)"
        }
        if let problem = Generation.problem(with: manifest.generation, "its generation") {
            return "the manifest's \(problem)"
        }
        if let seen = lastSeen {
            if manifest.generation < seen.generation {
                return "the manifest has generation \(manifest.generation), lower than generation \(seen.generation) "
                    + "already seen: a downgrade or a replayed old manifest"
            }
            if manifest.generation == seen.generation
                && (manifest.contentDigest != seen.contentDigest || manifest.snapshot.sha256 != seen.snapshotSHA256)
            {
                return "the manifest reuses generation \(manifest.generation) with other content than seen before "
                    + "(content \(manifest.contentDigest.prefix(12)) against \(seen.contentDigest.prefix(12))): "
                    + "a forged or replayed manifest"
            }
        }
        let snapshot = ChrootPaths.snapshot(manifest.generation)
        guard manifest.snapshot.path == snapshot else {
            return "the manifest names the snapshot \(quoted(manifest.snapshot.path)), not \(snapshot)"
        }
        guard NixAttribute.isValid(manifest.attribute) else {
            return "the manifest names the attribute \(quoted(manifest.attribute)), not a plain Nix attribute name"
        }
        if let toplevel = manifest.toplevel, Nix.hashPart(ofStorePath: toplevel) == nil {
            return "the manifest's toplevel \(quoted(toplevel)) is not a Nix store path"
        }
        guard (0...snapshotLimit).contains(manifest.snapshot.size) else {
            return "the manifest's snapshot size \(manifest.snapshot.size) is outside 0...\(snapshotLimit) bytes"
        }
        if let expiresAt = manifest.expiresAt, manifest.expirySeconds == nil {
            return "the manifest's expiry \(quoted(expiresAt)) is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)"
        }
        return nil
    }

    /// Why `manifest`, which verified and passed ``refusal(of:for:lastSeen:)``, is stale at `now` (seconds since
    /// the epoch); nil when it is fresh.
    ///
    /// A manifest past its expiry is stale: the server re-signs current manifests long before, so an expired one
    /// is served by a stale mirror or replayed by someone in the path (freeze protection). A manifest without an
    /// expiry is accepted only while `expiryRequired` is false, that is until the host has once seen one with an
    /// expiry (clients upgraded before their server keep working); after that it is a replayed pre-upgrade
    /// manifest and stale too.
    public static func staleness(of manifest: Manifest, now: Int64, expiryRequired: Bool) -> String? {
        guard let expiresAt = manifest.expiresAt else {
            guard expiryRequired else { return nil }
            return "the manifest of generation \(manifest.generation) for \(manifest.host) has no expiry, but this "
                + "host has seen manifests with one: a manifest signed before the server set expiries, replayed"
        }
        guard let expiry = manifest.expirySeconds, expiry > now else {
            return "the manifest of generation \(manifest.generation) for \(manifest.host) expired at \(expiresAt): "
                + "the server re-signs current manifests long before that (`fleet publish --refresh`), so it is "
                + "served by a stale mirror or replayed"
        }
        return nil
    }
}
