import FleetFiles
import FleetProtocol
import ServerStore

/// What publish finds of the snapshot a manifest names, before it relies on it: the current manifest's and that
/// of a generation staged for a later ring are judged alike, so that no host or ring is given one it refuses.
enum SnapshotCondition: Sendable, Equatable {
    /// In place, with the size and SHA-256 the manifest signs.
    case intact
    /// In place with the signed size but other bytes (damaged on disk, which a stat cannot see): publish writes it
    /// again from the same tree (``Publisher/repairSnapshot(of:from:layout:staged:result:)``).
    case damaged
    /// Absent, or not a file of the signed size: nothing to repair, a new generation takes its place.
    case missing

    /// The snapshot at `path` against what `manifest` signs, hashed as publish hashes every snapshot: by the digest
    /// cache, or read whole with `verify` (`fleet publish --verify`: damage below the filesystem leaves no trace a
    /// cache sees). `status` is the file's as the caller found it, nil for none: the caller decides what counts as
    /// the file (a staged snapshot must be a regular one), so each keeps its own rule.
    static func of(
        _ path: String, status: FileStatus?, signedBy manifest: Manifest, verify: Bool, digests: FileDigestCache
    ) -> SnapshotCondition {
        guard let status, status.size == manifest.snapshot.size else { return .missing }
        let sha256 = verify ? HostPlan.sha256(of: path) : try? digests.digest(of: path, status: status)
        return sha256 == manifest.snapshot.sha256 ? .intact : .damaged
    }
}

extension Publisher {
    /// Writes a damaged snapshot of `manifest`'s generation again from `tree`, the one way for the current
    /// generation and for one `staged` for a later ring, so both say, and record, the same. A dry run only says
    /// that a publish writes it again. When the same tree no longer gives the same bytes, a warning says that a new
    /// generation is published instead (or, `staged`, takes the staged one's place); the caller does that.
    ///
    /// - Returns: whether the snapshot was written again (never in a dry run); a `snapshot-repaired` event records it.
    func repairSnapshot(
        of manifest: Manifest, from tree: ResolvedTree, layout: ChrootLayout, staged: Bool,
        result: inout PublishResult
    ) throws -> Bool {
        let path = ChrootLayout.snapshotPathInChroot(manifest.generation)
        let snapshot = staged ? path + " (staged for a later ring)" : path
        if options.dryRun {
            result.warnings.append("\(snapshot) does not match its manifest (damaged): a publish writes it again")
            return false
        }
        guard try rewriteSnapshot(tree, of: manifest, layout: layout) else {
            result.warnings.append(
                "\(snapshot) did not match its manifest (damaged on disk), and the same tree no longer gives the same "
                    + "bytes: \(staged ? "a new generation takes its place" : "publishing a new generation")")
            return false
        }
        result.warnings.append(
            "\(snapshot) did not match its manifest (damaged on disk); written again from the same tree")
        try store.recordEvent(
            host: layout.host, kind: .snapshotRepaired,
            detail: staged ? ["snapshot": path, "staged": "true"] : ["snapshot": path])
        return true
    }

    /// Writes the snapshot of `manifest`'s generation again from `tree` (its content digest is the manifest's),
    /// replacing the damaged file only when the new bytes are exactly the ones the manifest signs: snapshots are
    /// deterministic, so they are unless something outside the content (the archive writer) changed.
    func rewriteSnapshot(_ tree: ResolvedTree, of manifest: Manifest, layout: ChrootLayout) throws -> Bool {
        let path = layout.snapshot(manifest.generation)
        let candidate = FileIO.temporaryPath(for: path + ".rewrite")
        let written = try writeSnapshot(tree, to: candidate, host: layout.host)
        guard written.sha256 == manifest.snapshot.sha256, written.size == manifest.snapshot.size else {
            _ = try? FileIO.removeFile(candidate)
            return false
        }
        try FileIO.renameDurably(candidate, to: path)
        return true
    }
}
