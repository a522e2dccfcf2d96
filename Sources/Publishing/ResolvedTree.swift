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
            case .file(_, let identity, let sha256):
                text += "f ".utf8
                text += entry.path.utf8
                text.append(UInt8(ascii: " "))
                text.appendDigits(Int64(entry.permissions), radix: 8)
                text.append(UInt8(ascii: " "))
                text.appendDigits(identity.size)
                text.append(UInt8(ascii: " "))
                text += sha256.utf8
            }
            text.append(UInt8(ascii: "\n"))
        }
        text += "operation=\(host.operation.rawValue)\nattribute=\(host.attribute)\n".utf8
        text += "toplevel=\(toplevel ?? "")\ncache=\(hasCache)\n".utf8
        return SHA256Hasher.hex(text)
    }
}
