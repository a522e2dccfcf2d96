import ArgumentParser
import BuildGate
import FleetFiles
import FleetProtocol
import Foundation
import Inventory
import Publishing
import ServerStore

extension Fleet {
    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Update the hosts' flake inputs, build them, and publish what built.",
            discussion: """
                Updates the inputs (all, or those named with --input) of each host's flake.lock in a scratch copy \
                of the repository's HEAD under <state_dir>/updates/, builds every host whose inputs moved, then: \
                with --policy all (the default) publishes them only if every one built, and otherwise changes \
                nothing; with --policy per-host publishes each that built, and the others keep their generation \
                and their lock, to be tried again by the next update. The published hosts' lock files are \
                written into the repository (committed with --commit) before they are published as `fleet \
                publish` would. The repository must be a git repository without uncommitted changes. Exits 1 \
                when any host failed. docs/updates.md has the details.
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "Hosts to update (default: all).")
        var hosts: [String] = []

        @Option(name: .customLong("input"), help: ArgumentHelp("An input to update (default: all).", valueName: "name"))
        var inputs: [String] = []

        @Option(
            help: ArgumentHelp(
                "all: publish only when every changed host built; per-host: publish each that built.",
                valueName: "all|per-host"))
        var policy = UpdateOptions.Policy.all.rawValue

        @Flag(help: "Commit the published hosts' lock files, with the input revisions in the message.")
        var commit = false

        @Flag(help: "Update and build in the scratch copy only: change nothing in the repository or the chroots.")
        var dryRun = false

        @Option(help: "How many hosts to build at once.")
        var jobs = 1

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func validate() throws {
            guard (1...64).contains(jobs) else { throw ValidationError("--jobs must be between 1 and 64") }
            guard UpdateOptions.Policy(rawValue: policy) != nil else {
                throw ValidationError(
                    "--policy \(String(reflecting: policy)): must be one of "
                        + UpdateOptions.Policy.allCases.map(\.rawValue).joined(separator: ", "))
            }
            for name in inputs where !FlakeLock.isValidInputName(name) {
                throw ValidationError(
                    "--input \(String(reflecting: name)) is not an input name: \(FlakeLock.inputNameRule)")
            }
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let selected = try configuration.selecting(hosts)
            let stateDirectory = configuration.server.stateDirectory
            let key = try SigningKeyFile.load(stateDirectory: stateDirectory)
            // Held for dry runs too: the scratch copies under <state_dir>/updates/ are one update's at a time.
            let lock = try Publisher.lock(stateDirectory: stateDirectory)
            let store = try StateStore(stateDirectory: stateDirectory)
            let update = try FleetUpdate(
                configuration: configuration, signingKey: key, store: store,
                options: UpdateOptions(
                    inputs: inputs, policy: UpdateOptions.Policy(rawValue: policy) ?? .all, commit: commit,
                    dryRun: dryRun, jobs: jobs))
            let quiet = json
            let outcome = try await update.run(selected) { line in
                if !quiet { printError(line) }
            }
            for warning in outcome.warnings { printError("warning: \(warning)") }
            withExtendedLifetime(lock) {}
            await UpdateAnnouncer(configuration).announce(outcome, dryRun: dryRun)
            if json {
                try printJSON(Output(outcome))
            } else {
                print(render(outcome))
            }
            if outcome.hasFailures { throw ExitCode(1) }
        }

        struct Output: Encodable {
            var outcome: UpdateRun.Outcome
            var policy: UpdateOptions.Policy
            var baseCommit: String
            var commit: String?
            var hosts: [HostUpdate]
            var publish: [PublishResult]
            var warnings: [String]

            init(_ run: UpdateRun) {
                outcome = run.outcome
                policy = run.policy
                baseCommit = run.baseCommit
                commit = run.commit
                hosts = run.hosts
                publish = run.publish?.results ?? []
                warnings = run.warnings
            }
        }

        func render(_ run: UpdateRun) -> String {
            var table = Table("HOST", "RESULT", "INPUTS", "GENERATION", "NOTE")
            for host in run.hosts {
                table.add(
                    host.host, host.status.rawValue, host.inputSummary, host.generation.map(String.init) ?? "-",
                    [host.reason, host.log.map { "log: \($0)" }].compactMap { $0 }.joined(separator: "; "))
            }
            var summary = "update \(run.outcome.rawValue) (policy \(run.policy.rawValue))"
            if let commit = run.commit { summary += "; committed \(commit.prefix(12))" }
            if run.outcome == .failed { summary += "; nothing was changed in the repository or the chroots" }
            return table.render() + "\n" + summary
        }
    }
}
