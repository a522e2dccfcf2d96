public import BuildGate
import FleetFiles
import FleetProtocol
public import Inventory
public import ServerStore

/// The collection of binary caches: each host's links that none of its served generations needs, then the
/// pool's files that no host links any more. `fleet publish` runs it after publishing, `fleet gc` on its own;
/// both hold the publish lock, so nothing is copied into the pool or linked meanwhile.
public enum CacheCollector {
    /// What one collection removed, per host (hosts with a cache only) and from the pool.
    public struct Report: Codable, Sendable {
        public struct HostRemoval: Codable, Sendable {
            public var host: String
            public var removed: CacheRemoval
        }

        public var hosts: [HostRemoval]
        public var pool: CacheRemoval

        public init(hosts: [HostRemoval], pool: CacheRemoval) {
            self.hosts = hosts
            self.pool = pool
        }

        public var files: Int { hosts.reduce(pool.files) { $0 + $1.removed.files } }
    }

    /// Collects every host's cache (keeping what the generations whose snapshots are still served need: the
    /// grace period is the snapshots') and then the pool. Call with the publish lock held.
    public static func collect(_ configuration: FleetConfiguration, store: StateStore) throws -> Report {
        var hosts: [Report.HostRemoval] = []
        let references = EntryReferences()
        for host in configuration.hosts {
            let layout = ChrootLayout(root: configuration.server.chrootRoot, host: host.name)
            guard let removed = try collect(layout, store: store, references: references) else { continue }
            hosts.append(.init(host: host.name.value, removed: removed))
        }
        return Report(hosts: hosts, pool: CachePool(chrootRoot: configuration.server.chrootRoot).collect())
    }

    /// Removes from `layout`'s cache what the systems of its served generations do not need; nil when the
    /// host has no cache (its `cache/` is missing or empty).
    ///
    /// - Parameter references: the entries' narinfos as read so far (``EntryReferences``), shared by the
    ///   collections of one run.
    public static func collect(
        _ layout: ChrootLayout, store: StateStore, references: EntryReferences = EntryReferences()
    ) throws -> CacheRemoval? {
        guard try FileStatus.of(layout.cache)?.kind == .directory, try !FileIO.listDirectory(layout.cache).isEmpty
        else { return nil }
        return BinaryCache(directory: layout.cache).collect(
            keeping: try servedToplevels(layout, store: store), references: references)
    }

    /// The systems (with a cache) of the generations whose snapshots are still in the chroot: the current
    /// one and those in their grace period, which a host may still be fetching.
    static func servedToplevels(_ layout: ChrootLayout, store: StateStore) throws -> [String] {
        var kept: Set<UInt64> = []
        if try FileStatus.of(layout.snapshots)?.kind == .directory {
            for name in try FileIO.listDirectory(layout.snapshots) {
                if let generation = ChrootLayout.generation(ofSnapshotNamed: name) { kept.insert(generation) }
            }
        }
        return try store.publications(of: layout.host).filter { kept.contains($0.generation) && $0.hasCache }
            .compactMap(\.toplevel)
    }
}
