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

    public var fileCount: Int { entries.count { if case .file = $0.kind { true } else { false } } }
    public var byteCount: Int64 {
        entries.reduce(0) { total, entry in
            if case .file(_, let identity, _) = entry.kind { total + identity.size } else { total }
        }
    }

    /// The hash that decides whether a host changed: every entry's path, mode and content, and the settings
    /// the manifest carries. Equal digests mean identical snapshots and manifests (but for the generation).
    public func contentDigest(for host: HostConfiguration, toplevel: String? = nil, hasCache: Bool = false) -> String {
        var hasher = SHA256Hasher()
        hasher.update("fleet-content-v1\n")
        for entry in entries {
            switch entry.kind {
            case .directory:
                hasher.update("d \(entry.path) \(String(entry.permissions, radix: 8))\n")
            case .file(_, let identity, let sha256):
                hasher.update("f \(entry.path) \(String(entry.permissions, radix: 8)) \(identity.size) \(sha256)\n")
            }
        }
        hasher.update("operation=\(host.operation.rawValue)\nattribute=\(host.attribute)\n")
        hasher.update("toplevel=\(toplevel ?? "")\ncache=\(hasCache)\n")
        return hasher.finalizeHex()
    }
}
