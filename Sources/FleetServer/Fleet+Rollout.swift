import ArgumentParser
import FleetFiles
import FleetHooks
import FleetProtocol
import FleetReview
import Foundation
import Inventory
import Mirroring
import Publishing
import ServerStore

extension Fleet {
    /// `fleet rollout`: where the staged rollout stands, and how to steer it.
    struct Rollout: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show and steer the ring-by-ring rollout of the newest publish.",
            discussion: """
                With [[rollout.rings]] in fleet.toml, `fleet publish` gives new generations to the first ring only. \
                Each ring is promoted when every host of it reported the generation applied and confirmed and \
                soak_seconds passed (checked by `fleet status`, `fleet review` and every `fleet rollout`); a \
                failure, rollback or silence beyond max_failures halts the rollout (hook event rollout-halted). \
                See docs/rollouts.md.
                """,
            subcommands: [Show.self, Resume.self, Abort.self, Promote.self], defaultSubcommand: Show.self)

        /// `fleet rollout status`: one review, one rollout step, the table.
        struct Show: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "status", abstract: "Check the hosts' reports, promote or halt as they say, and show it.")
            @OptionGroup var global: GlobalOptions
            @Flag(help: "Print JSON for scripts.") var json = false

            func run() async throws {
                try await Rollout.step(global: global, json: json) { controller, health, now in
                    try controller.advance(health: health, now: now)
                }
            }
        }

        struct Resume: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Accept the failures that halted the rollout and go on.")
            @OptionGroup var global: GlobalOptions
            @Flag(help: "Print JSON for scripts.") var json = false

            func run() async throws {
                try await Rollout.step(global: global, json: json) { controller, health, now in
                    try controller.resume(health: health, now: now)
                }
            }
        }

        struct Abort: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Give the hosts that got the rollout's generation their previous configuration again.",
                discussion: """
                    Each such host gets a new, higher generation holding its previous configuration (so no host \
                    refuses it as a downgrade); hosts still waiting never see the rollout's generation. Fix or \
                    revert the repository before the next publish, which would start a new rollout of what differs.
                    """)
            @OptionGroup var global: GlobalOptions
            @Flag(help: "Print JSON for scripts.") var json = false

            func run() async throws {
                let key = try SigningKeyFile.load(stateDirectory: try global.loadConfiguration().server.stateDirectory)
                try await Rollout.step(global: global, json: json) { controller, _, now in
                    try controller.abort(signingKey: key, now: now)
                }
            }
        }

        struct Promote: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Give the named ring (and those before it) the rollout's generations now.")
            @OptionGroup var global: GlobalOptions
            @Argument(help: "The ring's name in fleet.toml.") var ring: String
            @Flag(help: "Print JSON for scripts.") var json = false

            func run() async throws {
                try await Rollout.step(global: global, json: json) { controller, health, now in
                    try controller.promote(ringNamed: ring, health: health, now: now)
                }
            }
        }

        /// What `--json` prints.
        struct Output: Encodable {
            var rollout: RolloutReport
            var notes: [String]
            var events: [String]
        }

        /// Reviews every host, runs `action` under the publish lock, fires its events, prints where it stands.
        static func step(
            global: GlobalOptions, json: Bool,
            _ action: (RolloutController, [String: RolloutHealth], Date) throws -> RolloutController.Outcome
        ) async throws {
            let configuration = try global.loadConfiguration()
            guard configuration.rollout.isEnabled else {
                throw CommandFailure(
                    "\(configuration.file) has no [[rollout.rings]]: every publish reaches all hosts at once "
                        + "(docs/rollouts.md)")
            }
            let review = try Review(configuration: configuration)
            let snapshot = try await review.refresh(configuration.hosts)
            let now = WallClock.system.now()
            let lock = try Publisher.lock(stateDirectory: configuration.server.stateDirectory)
            let store = try StateStore(stateDirectory: configuration.server.stateDirectory)
            let controller = try RolloutController(configuration: configuration, store: store)
            let health = try RolloutHealthMapping.health(snapshot.hosts, controller: controller)
            let outcome = try action(controller, health, now)
            let report = try controller.report(health: health, now: now)
            withExtendedLifetime(lock) {}
            await HookRunner(configuration).fire(outcome.events)
            let pushed = await RolloutHealthMapping.pushToMirrors(after: outcome, configuration) {
                printError($0)
            }
            if json {
                try printJSON(
                    Output(rollout: report, notes: outcome.notes, events: outcome.events.map(\.event.rawValue)))
            } else {
                print(render(report, notes: outcome.notes))
            }
            if !pushed { throw ExitCode(1) }
        }

        /// The rings, the hosts of the rollout, and what it waits for.
        static func render(_ report: RolloutReport, notes: [String]) -> String {
            var text = "rollout: \(report.status)"
            if let ring = report.ring { text += ", at ring \(ring)" }
            if let startedAt = report.startedAt { text += ", started \(startedAt)" }
            var rings = Table("RING", "HOSTS", "SOAK", "MAX FAILURES", "HAS IT")
            for ring in report.rings {
                rings.add(
                    ring.name, ring.hosts.joined(separator: " "), "\(ring.soakSeconds) s", String(ring.maxFailures),
                    ring.reached ? "yes" : "no")
            }
            text += "\n\n" + rings.render()
            if !report.hosts.isEmpty {
                var hosts = Table("HOST", "RING", "GENERATION", "FROM", "STATE")
                for host in report.hosts {
                    hosts.add(
                        host.host, host.ring ?? "-", String(host.generation),
                        host.previousGeneration.map(String.init) ?? "-",
                        TerminalText.line(host.health + (host.waived ? " (accepted)" : ""), limit: 120))
                }
                text += "\n\n" + hosts.render()
            }
            if let reason = report.reason { text += "\n\nhalted: " + TerminalText.line(reason, limit: 300) }
            for note in notes { text += "\n" + TerminalText.line(note, limit: 300) }
            if let next = report.next, !notes.contains(next) { text += "\n" + TerminalText.line(next, limit: 300) }
            return text
        }
    }
}

/// How `fleet status`'s view of a host reads for the generation a rollout brings it.
enum RolloutHealthMapping {
    static func health(_ statuses: [HostStatus], controller: RolloutController) throws -> [String: RolloutHealth] {
        let generations = try controller.generations()
        var result: [String: RolloutHealth] = [:]
        for status in statuses {
            guard let generation = generations[status.host] else { continue }
            result[status.host] = health(status, generation: generation)
        }
        return result
    }

    static func health(_ status: HostStatus, generation: UInt64) -> RolloutHealth {
        let reason = status.reason ?? "no reason given"
        switch status.state {
        case .silent:
            return .silent(reason)
        case .failed where status.failedGeneration == generation:
            return .failed(reason)
        case .rolledBack where status.failedGeneration == generation:
            return .rolledBack(reason)
        case .upToDate, .buildFailed:
            // Up to date: its newest report (sent once the rollback window passed and the health checks passed)
            // says it runs the published generation. Build failed: the same, with a newer tree that did not build.
            return status.appliedGeneration == generation && status.publishedGeneration == generation
                ? .confirmed : .waiting
        default:
            return .waiting
        }
    }

    /// After a review of every host: one rollout step (when rings are configured and no publish is running),
    /// its events fired. Returns where the rollout stands, or nil without rings.
    static func advance(_ configuration: FleetConfiguration, statuses: [HostStatus]) async throws -> (
        report: RolloutReport, notes: [String]
    )? {
        guard configuration.rollout.isEnabled else { return nil }
        let stateDirectory = configuration.server.stateDirectory
        let store = try StateStore(stateDirectory: stateDirectory)
        let controller = try RolloutController(configuration: configuration, store: store)
        let health = try health(statuses, controller: controller)
        let now = WallClock.system.now()
        // A publish holds the lock: the next review goes on where this one could not.
        guard let lock = try FileLock.acquire(stateDirectory + "/publish.lock", wait: false) else {
            return (
                try controller.report(health: health, now: now),
                ["a publish (or `fleet gc`) is running: the rollout waits"]
            )
        }
        let outcome = try controller.advance(health: health, now: now)
        let report = try controller.report(health: health, now: now)
        withExtendedLifetime(lock) {}
        await HookRunner(configuration).fire(outcome.events)
        var notes = outcome.notes
        _ = await pushToMirrors(after: outcome, configuration) { notes.append($0) }
        return (report, notes)
    }

    /// A rollout step that gave a ring its generation (or returned hosts) changed what hosts fetch: with
    /// `[server] push_mirrors`, the mirrors get it now, as after a publish, not at the next push. One line per
    /// mirror to `say`; false when a push failed.
    static func pushToMirrors(
        after outcome: RolloutController.Outcome, _ configuration: FleetConfiguration, say: (String) -> Void
    ) async -> Bool {
        guard outcome.changedChroots, configuration.server.pushMirrors, !configuration.mirrors.isEmpty else {
            return true
        }
        let results = await MirrorPush(configuration: configuration).push(configuration.mirrors) { _ in }
        for result in results { say(Fleet.Mirror.line(result)) }
        return results.allSatisfy(\.succeeded)
    }
}
