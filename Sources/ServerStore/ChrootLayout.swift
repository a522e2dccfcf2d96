public import FleetProtocol

/// Where everything of one host lives under the chroot root: ``ChrootPaths`` (what the host sees) with the
/// host's chroot directory in front, and the owners and modes `fleet setup` and the publisher give them.
///
/// ```
/// <root>/.cache-pool/         root:root 0700   every store path once (`nix copy` writes here, nowhere else)
///   nix-cache-info, <hash>.narinfo               what `nix copy` made (its NARs go once in entries)
///   entries/<hash>            root 0644        a path's narinfo, an empty line, its NAR (`CacheEntry`)
/// <root>/<host>/              root:root 0755   ChrootDirectory
///   manifest                  root 0644
///   snapshots/<gen>.tar.zst   root:<host> 0640 (directory 02750: files inherit the host's group)
///   cache/                    root 0755        hard links to the pool's entries of exactly the closures of
///     <hash>                  root 0644        its served generations (same inodes)
///   logs/                     <host>:<host> 0700
///   dev/                      root 0755        (`fleet setup`) holds `log`, the syslog daemon's socket
/// ```
///
/// The pool's name starts with a dot, which no host name can (``HostName/rule``), so it is never a chroot;
/// it lies on the chroot root's filesystem because hard links cannot cross filesystems.
public struct ChrootLayout: Sendable {
    public let root: String
    public let host: HostName

    public init(root: String, host: HostName) {
        self.root = root
        self.host = host
    }

    public var directory: String { root + "/" + host.value }
    public var manifest: String { directory + ChrootPaths.manifest }
    public var snapshots: String { directory + ChrootPaths.snapshots }
    public var cache: String { directory + ChrootPaths.cache }
    public var logs: String { directory + ChrootPaths.logs }
    public var dev: String { directory + "/dev" }
    /// Where sshd, chrooted, sends internal-sftp's per-request log lines: a socket the syslog daemon listens on
    /// (see `fleet syslog-config`). Without it those lines are lost.
    public var logSocket: String { dev + "/log" }

    /// The server's one binary-cache pool (see the tree above): beside the chroots, in no chroot.
    public var cachePool: String { Self.cachePool(root: root) }

    public static func cachePool(root: String) -> String { root + "/" + cachePoolName }

    public static let cachePoolName = ".cache-pool"
    public static let cachePoolMode: UInt32 = 0o700

    public func snapshot(_ generation: UInt64) -> String { directory + ChrootPaths.snapshot(generation) }

    /// The snapshot's path as the host sees it inside its chroot.
    public static func snapshotPathInChroot(_ generation: UInt64) -> String { ChrootPaths.snapshot(generation) }

    /// The generation a snapshot file name stands for, or nil for any other name.
    public static func generation(ofSnapshotNamed name: String) -> UInt64? {
        guard name.hasSuffix(".tar.zst") else { return nil }
        let digits = name.dropLast(".tar.zst".count)
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.first != "0",
            let generation = UInt64(digits), Generation.isValid(generation)
        else { return nil }
        return generation
    }

    public static let snapshotDirectoryMode: UInt32 = 0o2750
    public static let snapshotFileMode: UInt32 = 0o640
    public static let logsMode: UInt32 = 0o700
}
