import ArgumentParser
import FleetFiles
import FleetProtocol
import Foundation
import Inventory
import Mirroring
import Publishing
import ServerStore

extension Fleet {
    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish changed hosts into their chroots, atomically and signed.",
            discussion: """
                Hosts with build = true (or cache = true) in fleet.toml, or all with --build, are built first and \
                published only if they built. Exits 1 when any host was refused or did not build; the other hosts \
                are still published. With --dry-run, such hosts say would-build (or, with --build, are built now and \
                say would-publish or would-fail, which exits 1 too). --json shows each host's toplevel: the one \
                built, or for an unchanged host the one its manifest names. Every publish re-signs manifests whose \
                expiry (manifest_ttl_seconds) is less than half the TTL away; --refresh does only that (no tree \
                resolution, no build, no new generation), for a timer. With --mirrors (or [server] push_mirrors = \
                true, when something was published or re-signed), `fleet mirror push` follows under the same lock.
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "Hosts to publish (default: all).")
        var hosts: [String] = []

        @Option(
            name: .customLong("role"),
            help: ArgumentHelp("Only hosts having this role (repeat for several).", valueName: "role"))
        var roles: [String] = []

        @Flag(help: "Build every changed host before publishing it (the build gate), whatever fleet.toml says.")
        var build = false

        @Flag(
            help: ArgumentHelp(
                "Show what would change; write nothing. A host behind the build gate says would-build, or with "
                    + "--build is built now (into the build cache only) and says would-publish or would-fail."))
        var dryRun = false

        @Flag(
            help: ArgumentHelp(
                "Read every current snapshot whole and write again any that no longer matches its manifest (also "
                    + "done without --verify for a snapshot whose file changed since it was hashed)."))
        var verify = false

        @Option(
            help: ArgumentHelp(
                "No new generation is lower than this. After losing state.db and the chroots, before the hosts have "
                    + "reported: one above the highest generation any host has (see docs/deployment.md, Recovery).",
                valueName: "generation"))
        var minGeneration: UInt64?

        @Flag(
            help: ArgumentHelp(
                "Only re-sign the manifests whose expiry is less than half of manifest_ttl_seconds away (same "
                    + "generation, new expiry): no tree resolution, no build. With --dry-run, say which are due."))
        var refresh = false

        @Flag(
            help: ArgumentHelp(
                "Then push the chroots to every [[mirrors]] (as `fleet mirror push`), whether or not something "
                    + "changed; [server] push_mirrors = true does it after every publish that changed something."))
        var mirrors = false

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func validate() throws {
            if mirrors && dryRun {
                throw ValidationError("--dry-run writes nothing, so pushes nothing: drop --mirrors")
            }
            if let minGeneration, let problem = Generation.problem(with: minGeneration, "--min-generation") {
                throw ValidationError(problem)
            }
            if refresh && (verify || minGeneration != nil) {
                throw ValidationError("--refresh only re-signs manifests: drop --verify and --min-generation")
            }
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let selected = try configuration.selecting(hosts, roles: roles)
            let stateDirectory = configuration.server.stateDirectory
            let key = try SigningKeyFile.load(stateDirectory: stateDirectory)
            if refresh {
                guard !build else { throw ValidationError("--refresh builds nothing: drop --build") }
                var lock: FileLock?
                if !dryRun {
                    lock = try FileLock.acquire(stateDirectory + "/publish.lock", wait: false)
                    // Not a failure of a timer's run: that publish re-signs what is due as well.
                    guard lock != nil else {
                        print(
                            "a publish (or `fleet gc`) holds \(stateDirectory)/publish.lock: the next publish re-signs what is due"
                        )
                        return
                    }
                }
                let results = ManifestRenewal.refresh(
                    selected, configuration: configuration, signingKey: key, now: WallClock.system.now(),
                    dryRun: dryRun)
                // Re-signed manifests reach the mirrors too, or theirs would expire.
                let pushed = await pushToMirrors(configuration, changed: results.contains(where: \.resigned))
                withExtendedLifetime(lock) {}
                if json { try printJSON(results) } else { print(render(results)) }
                if results.contains(where: { $0.problem != nil }) || !pushed { throw ExitCode(1) }
                return
            }
            let lock = dryRun ? nil : try Publisher.lock(stateDirectory: stateDirectory)
            let store = try StateStore(stateDirectory: stateDirectory)
            let repository = configuration.repository
            let publisher = try Publisher(
                configuration: configuration, signingKey: key, store: store,
                sourceCommit: { await Publisher.sourceCommit(repository: repository) },
                options: PublishOptions(
                    forceBuild: build, dryRun: dryRun, verifySnapshots: verify, minimumGeneration: minGeneration))
            let showProgress = FileIO.isTerminal(FileHandle.standardError.fileDescriptor) && !json
            var done = 0
            let outcome = try await publisher.publish(selected) { result in
                done += 1
                if showProgress {
                    FileHandle.standardError.write(
                        Data("\r\u{1b}[K[\(done)/\(selected.count)] \(result.host) \(result.status.rawValue)".utf8))
                }
            }
            if showProgress { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
            for warning in outcome.warnings { printError("warning: \(warning)") }
            // Under the publish lock: no publish may change the chroots between the push's passes.
            let pushed =
                dryRun
                ? true
                : await pushToMirrors(
                    configuration,
                    changed: outcome.results.contains { $0.status == .published || $0.resigned == true })
            withExtendedLifetime(lock) {}
            // `published` and `build-failed` for fleet.toml's hooks, once the publish is done (none for a dry
            // run): a hook never holds a host back, and a failing one is only logged.
            await PublishAnnouncer(configuration).announce(outcome)
            if json {
                try printJSON(outcome.results)
            } else {
                print(render(outcome.results))
            }
            if outcome.hasFailures || !pushed { throw ExitCode(1) }
        }

        /// Pushes to every mirror when asked (`--mirrors`, or `push_mirrors` and something `changed`), one line per
        /// mirror on standard error (standard output is the publish's table or JSON). False when a push failed.
        func pushToMirrors(_ configuration: FleetConfiguration, changed: Bool) async -> Bool {
            guard !dryRun, mirrors || (configuration.server.pushMirrors && changed) else { return true }
            guard !configuration.mirrors.isEmpty else {
                if mirrors { printError("warning: --mirrors: \(configuration.file) has no [[mirrors]]") }
                return true
            }
            let results = await MirrorPush(configuration: configuration).push(configuration.mirrors) { result in
                printError(Mirror.line(result))
            }
            return results.allSatisfy(\.succeeded)
        }

        /// The refresh's table and the line a timer's journal keeps: how many manifests were re-signed.
        func render(_ results: [ManifestRenewal.Result]) -> String {
            var table = Table("HOST", "GENERATION", "EXPIRES", "RESULT", "NOTE")
            for result in results {
                let words =
                    result.problem != nil
                    ? "problem"
                    : result.generation == nil
                        ? "no manifest" : result.resigned ? (dryRun ? "would re-sign" : "re-signed") : "fresh"
                table.add(
                    result.host, result.generation.map(String.init) ?? "-", result.expiresAt ?? "-", words,
                    result.problem ?? "")
            }
            let resigned = results.filter(\.resigned).count
            return table.render() + "\n" + (dryRun ? "\(resigned) would be re-signed" : "re-signed \(resigned)")
                + " of \(results.count) manifests"
        }

        func render(_ results: [PublishResult]) -> String {
            var table = Table("HOST", "GENERATION", "RESULT", "FILES", "BYTES", "SYSTEM", "NOTE")
            for result in results {
                var generation = result.generation.map(String.init) ?? "-"
                if [.published, .wouldPublish, .wouldBuild].contains(result.status),
                    let previous = result.previousGeneration
                {
                    generation += " (was \(previous))"
                }
                let note =
                    [result.reason].compactMap { $0 } + (result.resigned == true ? ["re-signed (new expiry)"] : [])
                    + result.warnings
                table.add(
                    result.host.value, generation, result.status.rawValue,
                    result.status == .refused ? "-" : String(result.files),
                    result.status == .refused ? "-" : ByteCount.scaled(result.bytes), result.toplevel ?? "",
                    note.joined(separator: "; "))
            }
            let counts = Dictionary(grouping: results, by: \.status).mapValues(\.count)
            let summary = [
                PublishResult.Status.published, .wouldPublish, .wouldBuild, .wouldFail, .unchanged, .refused,
                .buildFailed, .stillFailing, .staged,
            ].compactMap { status in
                counts[status].map { "\($0) \(status.rawValue)" }
            }.joined(separator: ", ")
            let resigned = results.filter { $0.resigned == true }.count
            return table.render() + "\n" + summary + (resigned > 0 ? "; re-signed \(resigned) unchanged manifests" : "")
        }
    }
}
