public import FleetFiles
public import FleetProtocol
public import Inventory

/// A host's tree and secrets with every link resolved: what its snapshot will hold, entry by entry.
public struct ResolvedTree: Sendable {
    public enum Kind: Sendable, Equatable {
        case directory
        /// A file whose bytes are read from `source` (a real path in the repository, never a link). `identity`
        /// is the version that was hashed: the snapshot is written from that version or not at all.
        case file(source: String, identity: FileIdentity, sha256: String)
        /// A file fleet writes itself (a host's `fleet-roles.nix`), with its bytes.
        case generated(bytes: [UInt8], sha256: String)

        /// The content's SHA-256, for either kind of file.
        public var sha256: String? {
            switch self {
            case .directory: nil
            case .file(_, _, let sha256), .generated(_, let sha256): sha256
            }
        }

        /// The content's size in bytes, for either kind of file.
        public var size: Int64? {
            switch self {
            case .directory: nil
            case .file(_, let identity, _): identity.size
            case .generated(let bytes, _): Int64(bytes.count)
            }
        }
    }

    public struct Entry: Sendable, Equatable {
        /// Path inside the snapshot: `tree/...` or `secrets/...`.
        public let path: String
        public let kind: Kind
        public let permissions: UInt32
    }

    public let host: HostName
    /// Sorted by the bytes of `path`, so a parent always precedes its children.
    public let entries: [Entry]

    public var fileCount: Int { entries.count { $0.kind.sha256 != nil } }
    public var byteCount: Int64 { entries.reduce(0) { total, entry in total + (entry.kind.size ?? 0) } }

    /// The hash that decides whether a host changed: every entry's path, mode and content, and the settings
    /// the manifest carries. Equal digests mean identical snapshots and manifests (but for the generation).
    public func contentDigest(for host: HostConfiguration, toplevel: String? = nil, hasCache: Bool = false) -> String {
        // One line per entry, hashed in one go: this runs for every host on every publish.
        var text: [UInt8] = []
        text.reserveCapacity(entries.count * 160 + 256)
        text += "fleet-content-v1\n".utf8
        for entry in entries {
            switch entry.kind {
            case .directory:
                text += "d ".utf8
                text += entry.path.utf8
                text.append(UInt8(ascii: " "))
                text.appendDigits(Int64(entry.permissions), radix: 8)
            case .file(_, _, let sha256), .generated(_, let sha256):
                text += "f ".utf8
                text += entry.path.utf8
                text.append(UInt8(ascii: " "))
                text.appendDigits(Int64(entry.permissions), radix: 8)
                text.append(UInt8(ascii: " "))
                text.appendDigits(entry.kind.size ?? 0)
                text.append(UInt8(ascii: " "))
                text += sha256.utf8
            }
            text.append(UInt8(ascii: "\n"))
        }
        text += "operation=\(host.operation.rawValue)\nattribute=\(host.attribute)\n".utf8
        text += "toplevel=\(toplevel ?? "")\ncache=\(hasCache)\n".utf8
        return SHA256Hasher.hex(text)
    }

    /// Whether one of the host's own `.nix` files (not its roles' nor the generated module) names
    /// `fleet-roles.nix`: without that, the roles' modules reach the host and are never imported.
    public var importsRolesModule: Bool {
        let tree = HostTreeResolver.treePrefix + "/"
        let roles = tree + HostTreeResolver.rolesDirectory + "/"
        return entries.contains { entry in
            guard case .file(let source, _, _) = entry.kind, entry.path.hasPrefix(tree), !entry.path.hasPrefix(roles),
                entry.path.hasSuffix(".nix"), let bytes = try? FileIO.readNoFollow(source, limit: 1 << 20)
            else { return false }
            return String(decoding: bytes, as: UTF8.self).contains(HostTreeResolver.rolesModule)
        }
    }
}
