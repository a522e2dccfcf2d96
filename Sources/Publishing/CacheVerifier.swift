public import BuildGate
import FleetFiles
import FleetProtocol
public import Inventory
public import ServerStore

/// `fleet gc --verify`: every entry of the pool read in full and checked against its narinfo and the fleet key
/// (``CachePool/verify(fleetKey:progress:)``), every host's cache checked for links to exactly the pool's entries
/// of its served systems, and what is wrong made again from the server's Nix store, as a publish would have
/// made it. A damaged entry is shared by every host whose closure has the path, and a publish reuses it as it
/// is: without this, each of those hosts would fail on it until someone found it by hand.
public enum CacheVerifier {
    /// What one verification read, found and repaired.
    public struct Report: Codable, Sendable {
        /// One damaged entry and what became of it.
        public struct Damage: Codable, Sendable {
            public var entry: DamagedEntry
            /// The hosts in fleet.toml whose served systems need it and whose cache linked it, which had their
            /// served systems' caches made again.
            public var hosts: [String]
            /// Its other links (a host no longer in fleet.toml, a link no served system needs any more): they keep
            /// the damaged file until they go (a collection, or the chroot's removal).
            public var otherLinks: Int
            /// Whether the pool has a new entry of the path and every one of `hosts` links it; or, when no host
            /// needs it, whether it is gone from the pool.
            public var repaired: Bool
        }

        /// A host's cache names that were missing from its served systems' closures or were not links to the
        /// pool's entries, and whether they are now.
        public struct Unlinked: Codable, Sendable {
            public var host: String
            public var names: [String]
            public var relinked: Bool
        }

        /// A served system whose cache could not be made again, and why.
        public struct Failure: Codable, Sendable {
            public var host: String
            public var toplevel: String
            public var reason: String
        }

        public var entries: Int
        public var bytes: Int64
        public var damaged: [Damage]
        public var unlinked: [Unlinked]
        public var failures: [Failure]

        /// Whether nothing was wrong, or everything wrong was repaired, and nothing failed.
        public var isWhole: Bool {
            damaged.allSatisfy(\.repaired) && unlinked.allSatisfy(\.relinked) && failures.isEmpty
        }
    }

    /// Verifies the pool and the hosts' caches and repairs what is wrong. Call with the publish lock held, before
    /// any collection: a collection reads the closures from the entries, and a damaged one misleads it.
    ///
    /// - Parameter progress: called after each entry read, with the count read and the count in all.
    /// - Throws: when the fleet's key cannot be read (the pool's signatures cannot be checked without it).
    public static func verify(
        _ configuration: FleetConfiguration, store: StateStore, progress: (Int, Int) -> Void = { _, _ in }
    ) async throws -> Report {
        let stateDirectory = configuration.server.stateDirectory
        let pool = CachePool(chrootRoot: configuration.server.chrootRoot)
        let verification = pool.verify(fleetKey: try fleetKey(stateDirectory: stateDirectory), progress: progress)
        var report = Report(
            entries: verification.entries, bytes: verification.bytes, damaged: [], unlinked: [], failures: [])

        let layouts = configuration.hosts.map { ChrootLayout(root: configuration.server.chrootRoot, host: $0.name) }
        let layoutOfHost = Dictionary(layouts.map { ($0.host.value, $0) }) { first, _ in first }
        var served: [String: [String]] = [:]
        for layout in layouts {
            served[layout.host.value] = try CacheCollector.servedToplevels(layout, store: store)
        }
        // What each host's served systems need, as the pool's narinfos say before anything is set aside.
        let references = PoolReferences(pool)
        var needs: [String: Set<String>] = [:]
        for layout in layouts {
            let cache = BinaryCache(directory: layout.cache)
            let needed = closures(of: served[layout.host.value] ?? [], pool: pool, references: references)
            needs[layout.host.value] = needed.names
            let names = unlinkedNames(in: cache, needing: needed, pool: pool)
            guard !names.isEmpty else { continue }
            report.unlinked.append(Report.Unlinked(host: layout.host.value, names: names, relinked: false))
        }
        var setAside: Set<String> = []
        for damaged in verification.damaged {
            // The hosts whose served systems need it; a host's link to it outside those is garbage its collection
            // removes, counted with the links outside fleet.toml's hosts.
            let linking = Set(
                pool.caches(linking: damaged, among: layouts.map { BinaryCache(directory: $0.cache) }).map(\.directory))
            let hosts = layouts.filter {
                linking.contains($0.cache) && needs[$0.host.value]?.contains(damaged.name) == true
            }
            .map(\.host.value)
            let links = (try? FileStatus.of(pool.entriesDirectory + "/" + damaged.name))?.linkCount ?? 1
            var damage = Report.Damage(
                entry: damaged, hosts: hosts, otherLinks: max(0, Int(links) - 1 - hosts.count), repaired: false)
            if hosts.isEmpty {
                damage.repaired = pool.remove(damaged)
            } else {
                do {
                    try pool.setAside(damaged)
                    setAside.insert(damaged.name)
                } catch {
                    report.failures.append(
                        Report.Failure(
                            host: "(pool)", toplevel: damaged.storePath ?? damaged.name,
                            reason: "the damaged entry cannot be set aside to be made again: \(error)"))
                }
            }
            report.damaged.append(damage)
        }

        // Each affected host's served systems are added and linked again, as a publish does: what was set aside
        // is copied from the server's Nix store anew (once: a system whose closure the pool holds whole again is
        // only linked), and each host's name is linked to the pool's new entry.
        let affected = Set(report.damaged.flatMap(\.hosts) + report.unlinked.map(\.host))
        let signingKeyFile = stateDirectory + "/" + SigningKeyFile.secretName
        for layout in layouts where affected.contains(layout.host.value) {
            for toplevel in served[layout.host.value] ?? [] {
                do {
                    if !pool.holdsClosure(of: toplevel) {
                        try await pool.add(closureOf: toplevel, signingKeyFile: signingKeyFile)
                    }
                    try pool.link(closureOf: toplevel, into: BinaryCache(directory: layout.cache))
                } catch {
                    report.failures.append(
                        Report.Failure(
                            host: layout.host.value, toplevel: toplevel,
                            reason: "its cache cannot be made again: \(error); it keeps what was damaged or missing, "
                                + "and the host fails on that, until `fleet gc --verify` can make it again"))
                }
            }
        }

        // What holds now, read from the disk: a damaged entry is repaired when the pool has a new one (the damaged
        // one was set aside, so this is another file) and every host that needs it links that.
        for index in report.damaged.indices where setAside.contains(report.damaged[index].entry.name) {
            let damage = report.damaged[index]
            guard pool.settle(damage.entry),
                let entry = try? FileStatus.of(pool.entriesDirectory + "/" + damage.entry.name)
            else { continue }
            report.damaged[index].repaired = damage.hosts.allSatisfy { host in
                guard let layout = layoutOfHost[host],
                    let link = try? FileStatus.of(layout.cache + "/" + damage.entry.name)
                else { return false }
                return link.device == entry.device && link.inode == entry.inode
            }
        }
        let referencesNow = PoolReferences(pool)
        for index in report.unlinked.indices {
            let host = report.unlinked[index].host
            guard let layout = layoutOfHost[host] else { continue }
            let needed = closures(of: served[host] ?? [], pool: pool, references: referencesNow)
            let still = unlinkedNames(in: BinaryCache(directory: layout.cache), needing: needed, pool: pool)
            report.unlinked[index].relinked = Set(still).isDisjoint(with: report.unlinked[index].names)
        }
        return report
    }

    /// The entry names the closures of `toplevels` hold, and those whose pool narinfo cannot be read.
    static func closures(of toplevels: [String], pool: CachePool, references: PoolReferences) -> (
        names: Set<String>, unreadable: Set<String>
    ) {
        var names: Set<String> = []
        var unreadable: Set<String> = []
        for toplevel in toplevels {
            let closure = pool.closureNames(of: toplevel, references: references)
            names.formUnion(closure.names)
            unreadable.formUnion(closure.unreadable)
        }
        return (names, unreadable)
    }

    /// The names a host's cache should hold as links to the pool's entries and does not: those its served
    /// systems need that it lacks or holds as another file than the pool's entry (or that the pool has no
    /// readable narinfo of). Names its systems do not need are left to its collection.
    static func unlinkedNames(
        in cache: BinaryCache, needing needed: (names: Set<String>, unreadable: Set<String>), pool: CachePool
    ) -> [String] {
        let held = cache.storePathHashes()
        let strays = Set(pool.strays(in: cache)).intersection(needed.names)
        return strays.union(needed.names.subtracting(held)).union(needed.unreadable).sorted()
    }

    /// The fleet's public key: from the secret key when it can be read, else from `signing.pub` beside it.
    static func fleetKey(stateDirectory: String) throws -> VerifyingKey {
        if let key = try? SigningKeyFile.load(stateDirectory: stateDirectory) { return key.publicKey }
        let path = stateDirectory + "/" + SigningKeyFile.publicName
        do {
            let text = String(decoding: try FileIO.readNoFollow(path, limit: 64 << 10), as: UTF8.self)
            return try VerifyingKey(nixFormat: text)
        } catch {
            throw SigningKeyFile.Failure(
                description: "cannot read the fleet's key (\(stateDirectory)/\(SigningKeyFile.secretName) or "
                    + "\(path)) to check the pool's signatures: \(error)")
        }
    }
}
