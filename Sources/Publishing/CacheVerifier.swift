public import BuildGate
import FleetFiles
import FleetProtocol
public import Inventory
public import ServerStore

/// `fleet gc --verify`: every entry of the pool read in full and checked against its narinfo
/// (``CachePool/verify(progress:)``), and each damaged one made again from the server's Nix store for the hosts
/// that link it, as a publish would have made it. A damaged entry is shared by every host whose closure has the
/// path, and a publish reuses it as it is: without this, each of those hosts would fail on it until someone
/// found it by hand.
public enum CacheVerifier {
    /// What one verification read, found and repaired.
    public struct Report: Codable, Sendable {
        /// One damaged entry and what became of it.
        public struct Damage: Codable, Sendable {
            public var entry: DamagedEntry
            /// The hosts in fleet.toml whose cache linked it, which had their served systems' caches made again.
            public var hosts: [String]
            /// Links to it outside those hosts' caches (a host no longer in fleet.toml, a copy by hand): they keep
            /// the damaged file, which goes with the last of them.
            public var otherLinks: Int
            /// Whether every one of `hosts` has its cache whole again.
            public var repaired: Bool
        }

        /// A host's cache files that were not links to the pool's entries, and whether they are now.
        public struct Strays: Codable, Sendable {
            public var host: String
            public var names: [String]
            public var relinked: Bool
        }

        /// A host whose cache could not be made again, and why.
        public struct HostFailure: Codable, Sendable {
            public var host: String
            public var reason: String
        }

        public var entries: Int
        public var bytes: Int64
        public var damaged: [Damage]
        public var strays: [Strays]
        public var failures: [HostFailure]

        /// Whether every damaged entry was repaired and every stray relinked (true when there were none).
        public var isWhole: Bool { damaged.allSatisfy(\.repaired) && strays.allSatisfy(\.relinked) }
    }

    /// Verifies the pool and repairs what is damaged. Call with the publish lock held, after a collection (so no
    /// garbage is read).
    ///
    /// - Parameter progress: called after each entry read, with the count read and the count in all.
    public static func verify(
        _ configuration: FleetConfiguration, store: StateStore, progress: (Int, Int) -> Void = { _, _ in }
    ) async -> Report {
        let pool = CachePool(chrootRoot: configuration.server.chrootRoot)
        let verification = pool.verify(progress: progress)
        var report = Report(
            entries: verification.entries, bytes: verification.bytes, damaged: [], strays: [], failures: [])
        let layouts = configuration.hosts.map { ChrootLayout(root: configuration.server.chrootRoot, host: $0.name) }
        let caches = layouts.map { BinaryCache(directory: $0.cache) }
        let cacheOfHost = Dictionary(zip(layouts.map(\.host.value), caches)) { first, _ in first }
        var affected: Set<String> = []
        for (layout, cache) in zip(layouts, caches) {
            let strays = pool.strays(in: cache)
            guard !strays.isEmpty else { continue }
            affected.insert(layout.host.value)
            report.strays.append(Report.Strays(host: layout.host.value, names: strays, relinked: false))
        }
        var setAside: [String?] = []
        for damaged in verification.damaged {
            let linking = Set(pool.caches(linking: damaged, among: caches).map(\.directory))
            let hosts = layouts.filter { linking.contains($0.cache) }.map(\.host.value)
            let links = (try? FileStatus.of(pool.entriesDirectory + "/" + damaged.name))?.linkCount ?? 1
            affected.formUnion(hosts)
            report.damaged.append(
                Report.Damage(
                    entry: damaged, hosts: hosts, otherLinks: max(0, Int(links) - 1 - hosts.count), repaired: false))
            if hosts.isEmpty {
                pool.remove(damaged)
                setAside.append(nil)
            } else {
                setAside.append(pool.setAside(damaged))
            }
        }

        // Each affected host's served systems are added and linked again, as a publish does: the damaged paths are
        // copied from the server's Nix store anew, and each host's link is replaced by one to the new entry.
        let signingKeyFile = configuration.server.stateDirectory + "/" + SigningKeyFile.secretName
        var failed: Set<String> = []
        for layout in layouts where affected.contains(layout.host.value) {
            do {
                for toplevel in try CacheCollector.servedToplevels(layout, store: store) {
                    try await pool.add(closureOf: toplevel, signingKeyFile: signingKeyFile)
                    try pool.link(closureOf: toplevel, into: BinaryCache(directory: layout.cache))
                }
            } catch {
                failed.insert(layout.host.value)
                report.failures.append(
                    Report.HostFailure(
                        host: layout.host.value,
                        reason: "its cache cannot be made again: \(error); it keeps what was damaged or not linked, "
                            + "and the host fails on that, until `fleet gc --verify` can make it again"))
            }
        }
        for (index, aside) in setAside.enumerated() {
            let damage = report.damaged[index]
            let madeAgain = aside.map { pool.settle(damage.entry, setAsideAt: $0) } ?? damage.hosts.isEmpty
            report.damaged[index].repaired = madeAgain && damage.hosts.allSatisfy { !failed.contains($0) }
        }
        for index in report.strays.indices {
            let host = report.strays[index].host
            guard !failed.contains(host), let cache = cacheOfHost[host] else { continue }
            report.strays[index].relinked = Set(pool.strays(in: cache)).isDisjoint(with: report.strays[index].names)
        }
        return report
    }
}
