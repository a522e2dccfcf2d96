import ArgumentParser
import FleetFiles
import FleetProtocol
import FleetReview
import Foundation
import Inventory
import Mirroring
import Publishing

extension Fleet {
    /// `fleet mirror`: replication of the chroots to `[[mirrors]]` with rsync over SSH, and the hosts' uploads back.
    struct Mirror: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Push the chroots to the mirrors in fleet.toml, and pull the hosts' uploads back.",
            discussion: """
                Mirrors are other OpenSSH servers set up with `fleet setup` from the same fleet.toml; hosts fall back \
                to them when this server is unreachable. See docs/deployment.md, Mirrors.
                """,
            subcommands: [Push.self, PullLogs.self])

        struct Push: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Copy the chroots to each mirror: snapshots and caches first, manifests last.",
                discussion: """
                    rsync over SSH, with the mirror's host_key pinned. First the mirror's Unix groups are checked \
                    (run `fleet setup` there first), then snapshots, caches and the cache pool are copied (hard \
                    links kept), then the manifests, then what is gone here is deleted there: a mirror never serves \
                    a manifest whose snapshot it lacks. The mirror's logs/ are never touched. One line per mirror; \
                    a mirror that fails is named with the fix, the others are still pushed, and the exit status is 1.
                    """)

            @OptionGroup var global: GlobalOptions

            @Argument(help: "Mirrors to push to (default: all).")
            var mirrors: [String] = []

            @Flag(help: "Print JSON for scripts.")
            var json = false

            func run() async throws {
                let configuration = try global.loadConfiguration()
                let selected = try Mirror.select(mirrors, in: configuration)
                let lock = try Publisher.lock(stateDirectory: configuration.server.stateDirectory)
                let results = await MirrorPush(configuration: configuration).push(selected) { result in
                    if !json { print(Mirror.line(result)) }
                }
                withExtendedLifetime(lock) {}
                if json { try printJSON(results) }
                if results.contains(where: { !$0.succeeded }) { throw ExitCode(1) }
            }
        }

        struct PullLogs: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "pull-logs",
                abstract: "Bring each mirror's logs/ back and ingest them like the hosts' uploads here.",
                discussion: """
                    Copies each host's logs/ from each mirror into <state_dir>/mirrors/<name>/pulled/ with rsync \
                    over SSH, then ingests them with the rules for untrusted uploads (a host seen through any mirror \
                    is seen). Files over 16 MiB are left on the mirror, each named in a warning with its size. \
                    Then the ingested reports and logs beyond [server] logs_keep are deleted on the mirror, as this \
                    server prunes its own. `fleet status --mirrors` does the same before its table.
                    """)

            @OptionGroup var global: GlobalOptions

            @Argument(help: "Mirrors to pull from (default: all).")
            var mirrors: [String] = []

            @Flag(help: "Print JSON for scripts.")
            var json = false

            struct Output: Encodable {
                var mirrors: [MirrorResult]
                var ingest: IngestSummary
            }

            func run() async throws {
                let configuration = try global.loadConfiguration()
                let selected = try Mirror.select(mirrors, in: configuration)
                let (results, snapshot) = try await Mirror.pullAndReview(
                    try Review(configuration: configuration), selected, hosts: configuration.hosts
                ) { result in
                    if !json {
                        print(Mirror.line(result))
                        for warning in result.warnings { print("warning: \(warning)") }
                    }
                }
                if json {
                    try printJSON(Output(mirrors: results, ingest: snapshot.ingest))
                } else {
                    let ingest = snapshot.ingest
                    print(
                        "ingested \(ingest.reports) reports, \(ingest.logs) logs, \(ingest.heartbeats) heartbeats; "
                            + "refused \(ingest.refused) (see `fleet status`)")
                }
                if results.contains(where: { !$0.succeeded }) { throw ExitCode(1) }
            }
        }

        /// The mirrors named (all when none), each name checked.
        static func select(_ names: [String], in configuration: FleetConfiguration) throws -> [MirrorConfiguration] {
            guard !configuration.mirrors.isEmpty else {
                throw CommandFailure("\(configuration.file) has no [[mirrors]]; see docs/deployment.md, Mirrors")
            }
            if names.isEmpty { return configuration.mirrors }
            return try names.map { name in
                guard let mirror = configuration.mirror(named: name) else {
                    throw CommandFailure(
                        "no mirror \(quoted(name)) in \(configuration.file) (mirrors: "
                            + configuration.mirrors.map(\.name).joined(separator: ", ") + ")")
                }
                return mirror
            }
        }

        /// Pulls the mirrors' logs (one at a time: `mirror-pull.lock`) and runs a review that ingests them.
        static func pullAndReview(
            _ review: Review, _ mirrors: [MirrorConfiguration], hosts: [HostConfiguration],
            progress: (MirrorResult) -> Void
        ) async throws -> ([MirrorResult], Review.Snapshot) {
            let configuration = review.configuration
            let lockPath = configuration.server.stateDirectory + "/mirror-pull.lock"
            guard let lock = try FileLock.acquire(lockPath, wait: true) else {
                throw CommandFailure("cannot take \(lockPath)")
            }
            defer { withExtendedLifetime(lock) {} }
            let puller = MirrorLogPull(configuration: configuration)
            // Progress waits for the prune, which follows the ingest of every mirror's copy.
            let pulled = await puller.pull(mirrors)
            var results = pulled.results
            let snapshot = try await review.refresh(hosts, mirrors: pulled.logs)
            for index in results.indices where results[index].succeeded {
                guard let mirror = configuration.mirror(named: results[index].mirror),
                    let paths = snapshot.ingest.mirrorPrunable[mirror.name]
                else { continue }
                let (deleted, warning) = await puller.prune(mirror, paths: paths)
                if let warning { results[index].warnings.append(warning) }
                if deleted > 0 { results[index].passes.append("prune") }
                results[index].pruned = deleted
            }
            for result in results { progress(result) }
            return (results, snapshot)
        }

        /// `mirror-a: pushed in 1.2 s` or `mirror-a: FAILED: …`.
        static func line(_ result: MirrorResult) -> String {
            let verb = result.action == "push" ? "pushed" : "pulled logs"
            if result.succeeded {
                let pruned =
                    result.pruned > 0 ? " (deleted \(result.pruned) old reports and logs there, beyond logs_keep)" : ""
                return "\(result.mirror): \(verb) in \(String(format: "%.1f", result.seconds)) s\(pruned)"
            }
            return "\(result.mirror): FAILED: \(result.error ?? "unknown error")"
        }
    }
}
