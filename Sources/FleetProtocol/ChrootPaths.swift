/// Where things are inside a host's chroot, as the host sees them over SFTP and the server lays them out:
/// the one definition both sides use (the server's ``ChrootLayout`` puts its root in front).
public enum ChrootPaths {
    /// The signed manifest, replaced by rename on every publish.
    public static let manifest = "/manifest"
    public static let snapshots = "/snapshots"
    /// The optional binary cache of the published system: one file per store path of its closure (`CacheEntry`).
    public static let cache = "/cache"
    /// The only place the host may write: its reports, logs, heartbeat and confirmation (see ``UploadName``).
    public static let logs = "/logs"

    /// `<generation>.tar.zst`: the snapshot of one generation, never changed once written.
    public static func snapshotName(_ generation: UInt64) -> String { "\(generation).tar.zst" }

    /// `/snapshots/<generation>.tar.zst`: the only snapshot path a manifest of that generation may name.
    public static func snapshot(_ generation: UInt64) -> String { snapshots + "/" + snapshotName(generation) }

    /// A file of the binary cache: a store path's entry, named by its hash part.
    public static func cacheFile(_ name: String) -> String { cache + "/" + name }

    /// An upload's final path in `logs/`.
    public static func upload(_ name: String) -> String { logs + "/" + name }

    /// Where an upload is written before it is renamed to `name`, so the server never reads half a file.
    public static func uploadInProgress(_ name: String) -> String { logs + "/" + UploadName.temporaryPrefix + name }
}
