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

                With --verify it then reads the whole pool: an entry whose NAR is not what its narinfo says \
                (FileSize, FileHash), or whose narinfo is not its path's, is made again from the server's Nix \
                store for every host that links it, and a host's cache file that is not a link to the pool's \
                entry is linked again. A publish reuses the pool's entries as they are, so this is how damage \
                on the server's disk is found before the hosts fail on it.
                """)

        @OptionGroup var global: GlobalOptions

        @Flag(
            help: """
                Then read every entry of the pool in full and check it against its narinfo (FileSize, FileHash); \
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
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let lock = try Publisher.lock(stateDirectory: configuration.server.stateDirectory)
            let store = try StateStore(stateDirectory: configuration.server.stateDirectory)
            let report = try CacheCollector.collect(configuration, store: store)
            var verification: CacheVerifier.Report?
            if verify {
                let showProgress = FileIO.isTerminal(FileHandle.standardError.fileDescriptor) && !json
                verification = await CacheVerifier.verify(configuration, store: store) { done, total in
                    guard showProgress, done == total || done % 64 == 0 else { return }
                    FileHandle.standardError.write(
                        Data("\r\u{1b}[Kverifying the pool: \(done) of \(total) entries".utf8))
                }
                if showProgress { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
            }
            withExtendedLifetime(lock) {}
            if json {
                try printJSON(Output(hosts: report.hosts, pool: report.pool, verification: verification))
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
                if let verification { Self.printVerification(verification) }
            }
            if let verification, !verification.isWhole { throw ExitCode.failure }
        }

        private static func printVerification(_ verification: CacheVerifier.Report) {
            if !verification.damaged.isEmpty {
                print("")
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
            for strays in verification.strays {
                let names = strays.names.prefix(3).joined(separator: ", ") + (strays.names.count > 3 ? ", …" : "")
                print(
                    "\(strays.host): \(strays.names.count) file(s) in its cache were not links to the pool's entries "
                        + "(\(names)): " + (strays.relinked ? "linked again" : "NOT linked again"))
            }
            for failure in verification.failures { printError("error: \(failure.host): \(failure.reason)") }
            let repaired = verification.damaged.filter(\.repaired).count
            print(
                "verified \(verification.entries) entries (\(ByteCount.scaled(verification.bytes))): "
                    + (verification.damaged.isEmpty
                        ? "all whole"
                        : "\(verification.damaged.count) damaged, \(repaired) repaired"))
        }
    }
}
