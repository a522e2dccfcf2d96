public import FleetFiles

/// Creates a host's chroot directories with the owners and modes sshd and the isolation need.
public enum ChrootProvisioner {
    /// Makes sure `layout`'s directories exist.
    ///
    /// - Parameters:
    ///   - user: the host's Unix account; nil when `fleet setup` has not made it yet (then root owns
    ///     everything and the host cannot read its snapshots until setup runs).
    ///   - repair: also correct owners and modes of directories that already exist (what `fleet setup` does);
    ///     publish only creates what is missing.
    public static func ensure(_ layout: ChrootLayout, user: Accounts.User?, repair: Bool) throws(FileSystemError) {
        try ensureDirectory(layout.root, mode: 0o755, owner: 0, group: 0, repair: repair)
        try ensureDirectory(layout.directory, mode: 0o755, owner: 0, group: 0, repair: repair)
        try ensureDirectory(
            layout.snapshots, mode: ChrootLayout.snapshotDirectoryMode, owner: 0, group: user?.gid ?? 0, repair: repair)
        try ensureDirectory(layout.cache, mode: 0o755, owner: 0, group: 0, repair: repair)
        try ensureDirectory(
            layout.logs, mode: ChrootLayout.logsMode, owner: user?.uid ?? 0, group: user?.gid ?? 0, repair: repair)
        if repair, let user {
            // Snapshots written before the user existed belong to root's group: hand them to the host's group.
            for name in try FileIO.listDirectory(layout.snapshots)
            where ChrootLayout.generation(ofSnapshotNamed: name) != nil {
                let path = layout.snapshots + "/" + name
                if let status = try FileStatus.of(path), status.kind == .regular, status.group != user.gid {
                    try FileIO.setOwner(path, owner: 0, group: user.gid)
                }
            }
        }
    }

    static func ensureDirectory(_ path: String, mode: UInt32, owner: UInt32, group: UInt32, repair: Bool)
        throws(FileSystemError)
    {
        if !repair, try FileIO.isExistingDirectory(path) { return }
        try FileIO.ensureDirectory(path, mode: mode, owner: owner, group: group)
    }
}
