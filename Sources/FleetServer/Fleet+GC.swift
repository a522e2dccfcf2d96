import ArgumentParser
import BuildGate
import FleetFiles
import Foundation
import Inventory
import Publishing
import ServerStore

extension Fleet {
    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Remove binary-cache files that no served generation needs, from the hosts' caches and the pool.",
            discussion: """
                Each host's cache/ keeps the closures of the generations whose snapshots are still served (the \
                current one and those in their grace period); the pool (<chroot_root>/.cache-pool) keeps the files \
                some host's cache links. `fleet publish` does the same after every publish; this runs it alone, \
                under the same lock. A host's bytes are those of the links removed: the disk space comes back \
                when the pool's copy goes.

                With --verify it first reads the whole pool: an entry whose NAR is not what its narinfo says \
                (FileSize, FileHash), or whose narinfo is not its path's or not signed by the fleet key, is made \
                again from the server's Nix store for every host that links it, and a host's cache name that is \
                missing or not a link to the pool's entry is linked again. The collection follows only when \
                everything is whole. A publish reuses the pool's entries as they are, so this is how damage on \
                the server's disk is found before the hosts fail on it.
                """)

        @OptionGroup var global: GlobalOptions

        @Flag(
            help: """
                First read every entry of the pool in full and check it against its narinfo (FileSize, FileHash, \
                the fleet key's signature); \
                make each damaged one again from the server's Nix store for the hosts that link it. Exits 1 when \
                something damaged could not be repaired.
                """)
        var verify = false

        @Flag(help: "Print JSON for scripts.")
        var json = false

        /// `--json`: the collection's report, and with `--verify` the verification's.
        struct Output: Encodable {
            var hosts: [CacheCollector.Report.HostRemoval]
            var pool: CacheRemoval
            var verification: CacheVerifier.Report?
            /// Why nothing was collected: with `--verify`, the collection runs only once the caches are whole.
            var collectionSkipped: String?
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let lock = try Publisher.lock(stateDirectory: configuration.server.stateDirectory)
            let store = try StateStore(stateDirectory: configuration.server.stateDirectory)
            var verification: CacheVerifier.Report?
            if verify {
                // Before the collection, which reads the closures from the entries: a damaged one would mislead it.
                let showProgress = FileIO.isTerminal(FileHandle.standardError.fileDescriptor) && !json
                verification = try await CacheVerifier.verify(configuration, store: store) { done, total in
                    guard showProgress, done == total || done % 64 == 0 else { return }
                    FileHandle.standardError.write(
                        Data("\r\u{1b}[Kverifying the pool: \(done) of \(total) entries".utf8))
                }
                if showProgress { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
            }
            var skipped: String?
            let report: CacheCollector.Report
            if let verification, !verification.isWhole {
                skipped = "not everything damaged or missing could be repaired: nothing was collected"
                report = CacheCollector.Report(hosts: [], pool: CacheRemoval())
            } else {
                report = try CacheCollector.collect(configuration, store: store)
            }
            withExtendedLifetime(lock) {}
            if json {
                try printJSON(
                    Output(
                        hosts: report.hosts, pool: report.pool, verification: verification, collectionSkipped: skipped))
            } else {
                if let verification { Self.printVerification(verification) }
                if let skipped {
                    printError("warning: \(skipped)")
                } else {
                    var table = Table("CACHE", "FILES", "BYTES")
                    for host in report.hosts {
                        table.add(host.host, String(host.removed.files), ByteCount.scaled(host.removed.bytes))
                    }
                    table.add("(pool)", String(report.pool.files), ByteCount.scaled(report.pool.bytes))
                    print(table.render())
                    print("removed \(report.files) files in all")
                    for host in report.hosts {
                        if let unreadable = host.removed.unreadable { printError("warning: \(unreadable)") }
                    }
                }
            }
            if let verification, !verification.isWhole { throw ExitCode.failure }
        }

        private static func printVerification(_ verification: CacheVerifier.Report) {
            if !verification.damaged.isEmpty {
                var table = Table("DAMAGED", "STORE PATH", "HOSTS", "REPAIRED", "WHY")
                for damage in verification.damaged {
                    var hosts = damage.hosts.joined(separator: ",")
                    if damage.otherLinks > 0 { hosts += (hosts.isEmpty ? "" : "+") + "\(damage.otherLinks) other" }
                    table.add(
                        "entries/" + damage.entry.name, damage.entry.storePath ?? "-", hosts.isEmpty ? "-" : hosts,
                        damage.repaired ? "yes" : "NO", damage.entry.reason)
                }
                print(table.render())
            }
            for unlinked in verification.unlinked {
                let names = unlinked.names.prefix(3).joined(separator: ", ") + (unlinked.names.count > 3 ? ", …" : "")
                print(
                    "\(unlinked.host): \(unlinked.names.count) name(s) of its cache were missing or not links to the "
                        + "pool's entries (\(names)): " + (unlinked.relinked ? "linked again" : "NOT linked again"))
            }
            for failure in verification.failures {
                printError("error: \(failure.host) (\(failure.toplevel)): \(failure.reason)")
            }
            let repaired = verification.damaged.filter(\.repaired).count
            let problems = verification.damaged.isEmpty && verification.unlinked.isEmpty
            print(
                "verified \(verification.entries) entries (\(ByteCount.scaled(verification.bytes))): "
                    + (problems
                        ? "all whole"
                        : "\(verification.damaged.count) damaged, \(repaired) repaired; "
                            + "\(verification.unlinked.count) cache(s) with names missing or unlinked, "
                            + "\(verification.unlinked.filter(\.relinked).count) linked again"))
        }
    }
}
