import ArgumentParser
import BuildGate
import FleetFiles
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
                """)

        @OptionGroup var global: GlobalOptions

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let lock = try Publisher.lock(stateDirectory: configuration.server.stateDirectory)
            let store = try StateStore(stateDirectory: configuration.server.stateDirectory)
            let report = try CacheCollector.collect(configuration, store: store)
            withExtendedLifetime(lock) {}
            if json {
                try printJSON(report)
                return
            }
            var table = Table("CACHE", "FILES", "BYTES")
            for host in report.hosts {
                table.add(host.host, String(host.removed.files), ByteCount.scaled(host.removed.bytes))
            }
            table.add("(pool)", String(report.pool.files), ByteCount.scaled(report.pool.bytes))
            print(table.render())
            print("removed \(report.files) files in all")
        }
    }
}
