import ArgumentParser
import BuildGate
import FleetFiles
import FleetProtocol
import Foundation
import Inventory
import Publishing
import ServerStore

extension Fleet {
    struct Build: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build hosts' configurations on the server, without publishing them.",
            discussion: """
                Each host's resolved tree is staged without its secrets under <state_dir>/builds/<host>/ and built \
                with Nix; the log stays there. A tree built before is not built again. Exits 1 when any host \
                failed to build or was refused.
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "Hosts to build (default: all).")
        var hosts: [String] = []

        @Option(help: "How many hosts to build at once.")
        var jobs = 1

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func validate() throws {
            guard (1...64).contains(jobs) else { throw ValidationError("--jobs must be between 1 and 64") }
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let selected = try configuration.selecting(hosts)
            let store = try StateStore(stateDirectory: configuration.server.stateDirectory)
            let resolver = try HostTreeResolver(repository: configuration.repository)
            let builder = SystemBuilder(stateDirectory: configuration.server.stateDirectory)
            var refusals: [(HostName, String)] = []
            var trees: [(HostConfiguration, ResolvedTree)] = []
            for host in selected {
                do {
                    trees.append((host, try resolver.resolve(host)))
                } catch {
                    refusals.append((host.name, error.problems.map(\.description).joined(separator: "; ")))
                }
            }
            var results: [BuildResult] = []
            let total = trees.count
            try await withThrowingTaskGroup(of: BuildResult.self) { group in
                var next = 0
                func start() {
                    let (host, tree) = trees[next]
                    next += 1
                    if !json {
                        printError("[\(next)/\(total)] building \(host.name) (nixosConfigurations.\(host.attribute))…")
                    }
                    group.addTask { await builder.build(host, files: tree.buildInputs) }
                }
                while next < min(jobs, total) { start() }
                while let result = try await group.next() {
                    results.append(result)
                    try store.record(result)
                    if !json {
                        printError(
                            "[\(results.count)/\(total)] \(result.host): \(result.status.rawValue)"
                                + (result.reason.map { ": \($0)" } ?? ""))
                    }
                    if next < total { start() }
                }
            }
            results.sort { $0.host < $1.host }
            if json {
                struct Output: Encodable {
                    var builds: [BuildResult]
                    var refused: [String: String]
                }
                try printJSON(
                    Output(
                        builds: results, refused: Dictionary(uniqueKeysWithValues: refusals.map { ($0.0.value, $0.1) }))
                )
            } else {
                var table = Table("HOST", "RESULT", "SECONDS", "SYSTEM OR REASON", "LOG")
                for result in results {
                    table.add(
                        result.host.value, result.status.rawValue, String(format: "%.1f", result.seconds),
                        result.toplevel ?? result.reason ?? "", result.log ?? "")
                }
                for (host, reason) in refusals { table.add(host.value, "refused", "-", reason, "") }
                print(table.render())
            }
            if !refusals.isEmpty || results.contains(where: { !$0.succeeded }) { throw ExitCode(1) }
        }

    }
}
