import FleetFiles
import FleetProtocol
import Inventory
import ServerStore

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

    enum Resolution: Sendable {
        case refused(ResolutionError)
        /// `isUnchanged`: the manifest publishes this very content, and its snapshot is in place with the
        /// recorded size.
        case resolved(ResolvedTree, contentDigest: String, isUnchanged: Bool)
    }

    init(_ host: HostConfiguration, chrootRoot: String, resolver: HostTreeResolver) {
        self.host = host
        layout = ChrootLayout(root: chrootRoot, host: host.name)
        let current = Self.currentManifest(layout)
        manifest = current.manifest
        let tree: ResolvedTree
        do throws(ResolutionError) {
            tree = try resolver.resolve(host)
        } catch {
            warnings = current.warnings
            resolution = .refused(error)
            return
        }
        let digest = tree.contentDigest(for: host, hasCache: host.cache)
        var isUnchanged = false
        if let manifest, manifest.contentDigest == digest {
            let snapshot = try? FileStatus.of(layout.snapshot(manifest.generation))
            isUnchanged = snapshot?.size == manifest.snapshot.size
        }
        // Checked (by reading the host's .nix files) only for a host with roles that is about to be published: a
        // no-op publish reads no file.
        let unused = !host.roles.isEmpty && !isUnchanged && !tree.importsRolesModule
        warnings = current.warnings + (unused ? [Self.unusedRoles(host)] : [])
        resolution = .resolved(tree, contentDigest: digest, isUnchanged: isUnchanged)
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
