import ArchiveKit
import FleetFiles
public import FleetProtocol
import Foundation
public import ServerStore

/// What the next publish would change for a host: its resolved tree against the snapshot it has now.
///
/// The published snapshot is extracted (safely, into a temporary directory) and compared file by file by
/// SHA-256. Secrets are compared too, but only their names are ever shown.
public struct PublishedTreeDiff: Sendable {
    public enum Change: String, Sendable, Codable {
        case added, removed, changed
    }

    public struct File: Sendable, Codable, Equatable {
        /// Path inside the snapshot: `tree/…` or `secrets/…`.
        public let path: String
        public let change: Change
        /// The published version, extracted (for `diff -u`); nil when added, and for secrets.
        public let publishedCopy: String?
        /// The repository file the next snapshot would take it from; nil when removed, and for secrets.
        public let source: String?
        public var isSecret: Bool { path.hasPrefix(HostTreeResolver.secretsPrefix + "/") }
    }

    public let host: HostName
    /// The generation compared against, nil when nothing is published yet.
    public let publishedGeneration: UInt64?
    public let files: [File]

    /// Compares `tree` with the host's current snapshot in `layout` and hands the comparison to `body`.
    ///
    /// The published snapshot is extracted into a scratch directory that each ``File/publishedCopy`` points
    /// into; it is removed when `body` returns or throws (and when the comparison itself fails), so the
    /// copies are valid only inside `body`.
    public static func withComparison<Result>(
        _ tree: ResolvedTree, with layout: ChrootLayout, _ body: (PublishedTreeDiff) async throws -> Result
    ) async throws -> Result {
        let scratch = FileManager.default.temporaryDirectory.path + "/fleet-diff-\(UUID().uuidString)"
        defer { try? FileIO.removeTree(scratch) }
        return try await body(try compare(tree, with: layout, scratch: scratch))
    }

    /// Compares `tree` with the host's current snapshot in `layout`, extracting that snapshot into `scratch`.
    static func compare(_ tree: ResolvedTree, with layout: ChrootLayout, scratch: String) throws -> PublishedTreeDiff {
        let manifest = (try? FileIO.readNoFollow(layout.manifest, limit: Manifest.sizeLimit)).flatMap {
            try? Manifest.readUnverified($0)
        }
        var published: [String: (sha256: String, copy: String)] = [:]
        if let manifest {
            _ = try SafeExtractor().extract(
                archivePath: layout.snapshot(manifest.generation), into: scratch,
                limits: ExtractionLimits(maxBytes: 8 << 30, maxEntries: 500_000, maxFileBytes: 2 << 30), durable: false)
            try walk(scratch, relative: "") { path, full in
                published[path] = (try SHA256Hasher.file(full), full)
            }
        }
        var files: [File] = []
        var seen: Set<String> = []
        for entry in tree.entries {
            let source: String
            let sha256: String
            switch entry.kind {
            case .directory: continue
            case .file(let path, _, let hash): (source, sha256) = (path, hash)
            case .generated(let bytes, let hash):
                // Written beside the extracted snapshot (whose paths all start with tree/ or secrets/), so
                // `diff -u` can read it like any other file.
                source = scratch + "/generated/" + entry.path
                try FileIO.createDirectories(FileIO.split(source).directory, mode: 0o700)
                try FileIO.writeAtomically(bytes, to: source, mode: 0o600)
                sha256 = hash
            }
            seen.insert(entry.path)
            let secret = entry.path.hasPrefix(HostTreeResolver.secretsPrefix + "/")
            if let old = published[entry.path] {
                if old.sha256 != sha256 {
                    files.append(
                        File(
                            path: entry.path, change: .changed, publishedCopy: secret ? nil : old.copy,
                            source: secret ? nil : source))
                }
            } else {
                files.append(File(path: entry.path, change: .added, publishedCopy: nil, source: secret ? nil : source))
            }
        }
        for (path, old) in published where !seen.contains(path) {
            let secret = path.hasPrefix(HostTreeResolver.secretsPrefix + "/")
            files.append(File(path: path, change: .removed, publishedCopy: secret ? nil : old.copy, source: nil))
        }
        files.sort { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }
        return PublishedTreeDiff(host: tree.host, publishedGeneration: manifest?.generation, files: files)
    }

    private static func walk(_ directory: String, relative: String, _ visit: (String, String) throws -> Void) throws {
        for name in try FileIO.listDirectory(directory).sorted() {
            let full = directory + "/" + name
            let path = relative.isEmpty ? name : relative + "/" + name
            guard let status = try FileStatus.of(full) else { continue }
            if status.kind == .directory {
                try walk(full, relative: path, visit)
            } else if status.kind == .regular {
                try visit(path, full)
            }
        }
    }
}

extension SHA256Hasher {
    /// The hex SHA-256 of a file's bytes, read without following a link.
    static func file(_ path: String) throws -> String {
        SHA256Hasher.hex(try FileIO.readNoFollow(path, limit: 2 << 30))
    }
}
