public import FleetFiles
public import ServerStore

/// Removes what a host no longer needs from its chroot: superseded snapshots once their grace period has
/// passed (a client may still be downloading one), snapshots newer than the manifest (left by a crash
/// between snapshot and manifest), and temporary files. Never the current snapshot, nor those a rollout keeps
/// (`keeping`: a generation staged for a later ring, and the one `fleet rollout abort` would return to).
public enum SnapshotCollector {
    /// - Returns: the paths removed.
    @discardableResult
    public static func collect(
        _ layout: ChrootLayout, currentGeneration: UInt64, graceSeconds: Int, now: Int64, keeping: Set<UInt64> = []
    ) throws(FileSystemError) -> [String] {
        var removed: [String] = []
        if try FileStatus.of(layout.directory)?.kind == .directory {
            for name in try FileIO.listDirectory(layout.directory) where name.hasPrefix(FileIO.temporaryPrefix) {
                try remove(layout.directory + "/" + name, into: &removed)
            }
        }
        guard try FileStatus.of(layout.snapshots)?.kind == .directory else { return removed }
        var snapshots: [(generation: UInt64, modified: Int64)] = []
        // One listing for both temporary files and snapshots: this runs for every host on every publish.
        for name in try FileIO.listDirectory(layout.snapshots) {
            if name.hasPrefix(FileIO.temporaryPrefix) {
                try remove(layout.snapshots + "/" + name, into: &removed)
                continue
            }
            guard let generation = ChrootLayout.generation(ofSnapshotNamed: name),
                let status = try FileStatus.of(layout.snapshot(generation)), status.kind == .regular
            else { continue }
            snapshots.append((generation, status.modificationSeconds))
        }
        snapshots.sort { $0.generation < $1.generation }
        for (index, snapshot) in snapshots.enumerated() where !keeping.contains(snapshot.generation) {
            if snapshot.generation > currentGeneration {
                try remove(layout.snapshot(snapshot.generation), into: &removed)
            } else if snapshot.generation < currentGeneration, index + 1 < snapshots.count {
                // Superseded when the next snapshot was written.
                let supersededAt = snapshots[index + 1].modified
                if now - supersededAt >= Int64(graceSeconds) {
                    try remove(layout.snapshot(snapshot.generation), into: &removed)
                }
            }
        }
        return removed
    }

    static func remove(_ path: String, into removed: inout [String]) throws(FileSystemError) {
        try FileIO.removeFile(path)
        removed.append(path)
    }
}
