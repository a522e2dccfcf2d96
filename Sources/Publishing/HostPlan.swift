import FleetFiles
import FleetProtocol
import Foundation
import Inventory
import ServerStore
import SystemPackage

/// What publishing one host starts from: its current manifest, its resolved tree, and whether that tree is
/// what the manifest already publishes. Working it out only reads, so hosts are planned on all cores while
/// ``Publisher`` writes, one host at a time.
struct HostPlan: Sendable {
    let host: HostConfiguration
    let layout: ChrootLayout
    /// The manifest in the chroot now, if it can be read and names this host.
    let manifest: Manifest?
    /// Why the manifest could not be used, if it could not.
    let warnings: [String]
    let resolution: Resolution
    /// The highest generation the host itself says it has seen, applied or failed (its heartbeats in `logs/`).
    /// Above the manifest's, the server's state was lost or restored from an older backup: the next generation
    /// must be above it, or the host refuses it as a downgrade.
    let reportedGeneration: UInt64?
    /// The snapshot the manifest names is in place with its size, but its bytes are no longer the ones the
    /// manifest signs (damaged on disk): a publish writes it again.
    let snapshotDamaged: Bool

    enum Resolution: Sendable {
        case refused(ResolutionError)
        /// `isUnchanged`: the manifest publishes this very content, and its snapshot is in place with the
        /// recorded size.
        case resolved(ResolvedTree, contentDigest: String, isUnchanged: Bool)
    }

    /// Plans `host`. With `verifySnapshots` the current snapshot is read whole, even when its file is the one
    /// that was hashed before (`fleet publish --verify`: damage below the filesystem, which leaves no trace).
    init(_ host: HostConfiguration, chrootRoot: String, resolver: HostTreeResolver, verifySnapshots: Bool = false) {
        self.host = host
        layout = ChrootLayout(root: chrootRoot, host: host.name)
        let current = Self.currentManifest(layout)
        manifest = current.manifest
        reportedGeneration = Self.reportedGeneration(layout)
        let tree: ResolvedTree
        do throws(ResolutionError) {
            tree = try resolver.resolve(host)
        } catch {
            warnings = current.warnings
            resolution = .refused(error)
            snapshotDamaged = false
            return
        }
        let digest = tree.contentDigest(for: host, hasCache: host.cache)
        var isUnchanged = false
        var damaged = false
        if let manifest, manifest.contentDigest == digest {
            let path = layout.snapshot(manifest.generation)
            let condition = SnapshotCondition.of(
                path, status: try? FileStatus.of(path), signedBy: manifest, verify: verifySnapshots,
                digests: resolver.digests)
            damaged = condition == .damaged
            isUnchanged = condition == .intact && (reportedGeneration ?? 0) <= manifest.generation
        }
        snapshotDamaged = damaged
        // Checked (by reading the host's .nix files) only for a host with roles that is about to be published: a
        // no-op publish reads no file.
        let unused = !host.roles.isEmpty && !isUnchanged && !damaged && !tree.importsRolesModule
        warnings = current.warnings + (unused ? [Self.unusedRoles(host)] : [])
        resolution = .resolved(tree, contentDigest: digest, isUnchanged: isUnchanged)
    }

    /// The SHA-256 of the file at `path` read now, nil when it cannot be read.
    static func sha256(of path: String) -> String? {
        guard let (descriptor, _) = try? FileIO.openRegularFileNoFollow(path) else { return nil }
        defer { try? descriptor.close() }
        return try? FileIO.sha256(of: descriptor, path: path)
    }

    /// A heartbeat is a few hundred bytes; anything larger is not one.
    static let heartbeatLimit = 64 << 10

    /// The highest valid generation in the host's heartbeats naming this host: both slots and an older client's
    /// `heartbeat.json` (a slot being written, or spoiled, does not decode and is passed over). The files are the
    /// host's uploads, so nothing in them is trusted but the numbers, and those only raise this host's generations.
    static func reportedGeneration(_ layout: ChrootLayout) -> UInt64? {
        var highest: UInt64?
        for name in UploadName.heartbeatNames {
            guard let bytes = try? FileIO.readNoFollow(layout.logs + "/" + name, limit: heartbeatLimit),
                let beat = try? JSONDecoder().decode(Heartbeat.self, from: Data(bytes)), beat.host == layout.host.value,
                let generation = [beat.appliedGeneration, beat.seenGeneration, beat.failedGeneration].compactMap({ $0 })
                    .filter(Generation.isValid).max()
            else { continue }
            highest = max(highest ?? generation, generation)
        }
        return highest
    }

    /// Roles whose modules would be published and never imported: almost certainly a flake that was not told.
    static func unusedRoles(_ host: HostConfiguration) -> String {
        "hosts/\(host.name)/ has the roles \(host.roles.joined(separator: ", ")) but none of its .nix files mentions "
            + "./\(HostTreeResolver.rolesModule), so their modules are published and not used; add it to the modules "
            + "of nixosConfigurations.\(host.attribute) (see `fleet init`'s flake.nix)"
    }

    /// The manifest currently published for a host, read back without trusting it blindly.
    static func currentManifest(_ layout: ChrootLayout) -> (manifest: Manifest?, warnings: [String]) {
        let bytes: [UInt8]
        do {
            guard try FileStatus.of(layout.manifest) != nil else { return (nil, []) }
            bytes = try FileIO.readNoFollow(layout.manifest, limit: Manifest.sizeLimit)
        } catch {
            return (nil, ["cannot read the current manifest (\(error)); publishing a new generation"])
        }
        do {
            let manifest = try Manifest.readUnverified(bytes)
            guard manifest.host == layout.host else {
                return (nil, ["\(layout.manifest) names host \(manifest.host); replacing it"])
            }
            return (manifest, [])
        } catch {
            return (nil, ["\(layout.manifest): \(error); replacing it"])
        }
    }
}
