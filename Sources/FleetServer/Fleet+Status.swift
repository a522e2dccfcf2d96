import ArgumentParser
import FleetFiles
import FleetProtocol
import FleetReview
import Foundation
import Inventory
import Mirroring
import Publishing
import ServerStore

extension Fleet {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ingest the hosts' reports and show where each host stands.",
            discussion: """
                Reads what hosts uploaded into their chroots' logs/ since the last run (reports, logs, heartbeats) \
                into state.db, then shows per host: the generation published and applied, the state (up to date, \
                pending, failed, rolled back, silent, never seen), when it was last seen, whether it needs a \
                reboot, why it failed, its fleet-client version (--json; a client a major version older than this \
                server is warned about), and warnings about files in its logs/ that were refused. Hooks in \
                fleet.toml are told about hosts that applied, failed, rolled back or went silent (once each).
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "Hosts to show (default: all).")
        var hosts: [String] = []

        @Option(
            name: .customLong("role"),
            help: ArgumentHelp("Only hosts having this role (repeat for several).", valueName: "role"))
        var roles: [String] = []

        @Flag(help: "Print JSON for scripts.")
        var json = false

        @Flag(
            help: ArgumentHelp(
                "First bring every [[mirrors]]' logs/ back (as `fleet mirror pull-logs`) and ingest them too; a "
                    + "mirror that cannot be reached is named on standard error and the exit status is 1."))
        var mirrors = false

        @Flag(help: "Keep polling, and redraw when something changes (Ctrl-C stops).")
        var watch = false

        @Option(help: ArgumentHelp("Seconds between polls with --watch.", valueName: "seconds"))
        var interval: Double = 5

        @Option(help: ArgumentHelp("With --watch, stop after this many polls.", valueName: "n"))
        var count: Int?

        func validate() throws {
            if !(0.05...86400).contains(interval) {
                throw ValidationError("--interval must be between 0.05 and 86400 seconds")
            }
            if let count, count < 1 { throw ValidationError("--count must be at least 1") }
            if count != nil && !watch { throw ValidationError("--count goes with --watch") }
        }

        /// What `--json` prints.
        struct Output: Encodable {
            var at: String
            var hosts: [HostStatus]
            var ingest: IngestSummary
            /// With [[rollout.rings]]: where the rollout stands (checked and promoted by this status).
            var rollout: RolloutReport?
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let review = try Review(configuration: configuration)
            let selected = try review.hosts(hosts, roles: roles)
            var mirrorFailed = false
            /// One refresh: with --mirrors, the mirrors' logs are pulled and ingested first.
            func refresh() async throws -> Review.Snapshot {
                guard mirrors else { return try await review.refresh(selected) }
                let (results, snapshot) = try await Mirror.pullAndReview(
                    review, try Mirror.select([], in: configuration), hosts: selected
                ) { result in
                    if !result.succeeded { printError(Mirror.line(result)) }
                    for warning in result.warnings { printError("warning: \(warning)") }
                }
                if results.contains(where: { !$0.succeeded }) { mirrorFailed = true }
                return snapshot
            }
            guard watch else {
                let snapshot = try await refresh()
                // The rollout is judged on every host, so only a status of all of them steps it.
                let rollout =
                    hosts.isEmpty && roles.isEmpty
                    ? try await RolloutHealthMapping.advance(configuration, statuses: snapshot.hosts) : nil
                if json {
                    try printJSON(
                        Output(
                            at: UTCTime.iso(nanoseconds: snapshot.at), hosts: snapshot.hosts, ingest: snapshot.ingest,
                            rollout: rollout?.report))
                } else {
                    print(Self.render(snapshot.hosts) + (rollout.map { Self.render($0.report, notes: $0.notes) } ?? ""))
                }
                if mirrorFailed { throw ExitCode(1) }
                return
            }
            let redrawInPlace = !json && FileIO.isTerminal(FileHandle.standardOutput.fileDescriptor)
            var shown: String?
            var polls = 0
            while true {
                let snapshot = try await refresh()
                let rollout =
                    hosts.isEmpty && roles.isEmpty
                    ? try await RolloutHealthMapping.advance(configuration, statuses: snapshot.hosts) : nil
                // Compared without the ages in seconds, so that a frame is printed when something changed.
                let frame: String
                let key: String
                if json {
                    frame = try jsonText(
                        Output(
                            at: UTCTime.iso(nanoseconds: snapshot.at), hosts: snapshot.hosts, ingest: snapshot.ingest,
                            rollout: rollout?.report), pretty: false)
                    key = try jsonText(
                        snapshot.hosts.map { row in
                            var row = row
                            row.lastSeenSecondsAgo = nil
                            return row
                        }, pretty: false)
                } else {
                    frame =
                        Self.render(snapshot.hosts) + (rollout.map { Self.render($0.report, notes: $0.notes) } ?? "")
                    key = frame
                }
                if key != shown {
                    if redrawInPlace {
                        print("\u{1b}[H\u{1b}[2J", terminator: "")
                        print(
                            "fleet status, every \(Self.seconds(interval)); "
                                + "\(UTCTime.iso(nanoseconds: snapshot.at))\n"
                        )
                    } else if shown != nil && !json {
                        print("")
                    }
                    print(frame)
                    fflush(nil)
                    shown = key
                }
                polls += 1
                if let count, polls >= count { break }
                try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
            }
        }

        /// One line under the table: where the rollout stands and what it waits for (`fleet rollout` shows more).
        static func render(_ rollout: RolloutReport, notes: [String]) -> String {
            var line = "\n\nrollout: \(rollout.status)"
            if let ring = rollout.ring { line += " at ring \(ring)" }
            if let reason = rollout.reason { line += "; " + TerminalText.line(reason, limit: 200) }
            for note in notes { line += "\n  " + TerminalText.line(note, limit: 200) }
            return line
        }

        /// After the last-seen age: ` (via mirror-a)` when the upload was pulled from a mirror, and the server that
        /// served the run when it is a mirror other than that one (` (served by mirror-b)`); nothing for this server.
        static func via(_ row: HostStatus) -> String {
            var parts: [String] = []
            if let via = row.lastSeenVia { parts.append("via \(via)") }
            if let server = row.server, server != ClientConfiguration.primaryName, server != row.lastSeenVia {
                parts.append("served by \(TerminalText.line(server, limit: 64))")
            }
            return parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")"
        }

        static func seconds(_ value: Double) -> String {
            value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
        }

        /// The table, a count per state, and the warnings under it.
        static func render(_ rows: [HostStatus]) -> String {
            var table = Table("HOST", "STATE", "PUBLISHED", "APPLIED", "LAST SEEN", "REBOOT", "WARNINGS", "REASON")
            for row in rows {
                table.add(
                    row.host, row.stateWords, row.publishedGeneration.map(String.init) ?? "-",
                    row.appliedGeneration.map(String.init) ?? "-",
                    (row.lastSeenSecondsAgo.map { ReviewTime.age(seconds: $0) } ?? "never") + Self.via(row),
                    row.rebootNeeded.map { $0 ? "yes" : "no" } ?? "-", String(row.warningCount),
                    row.reason.map { TerminalText.line($0, limit: 100) } ?? "")
            }
            var text = table.render()
            let counts = HostState.allCases.compactMap { state -> String? in
                let count = rows.filter { $0.state == state }.count
                return count == 0 ? nil : "\(count) \(state.words)"
            }
            text += "\n" + (counts.isEmpty ? "no hosts" : counts.joined(separator: ", "))
            // A host with a problem of its own shows that as its state; its server-side build failure goes here.
            let unbuilt = rows.compactMap { row in
                row.state == .buildFailed ? nil : row.buildFailure.map { (row.host, $0) }
            }
            if !unbuilt.isEmpty {
                text += "\n\nnewest configurations that did not build on the server:"
                for (host, failure) in unbuilt {
                    text +=
                        "\n  \(host): at \(failure.failedAt): "
                        + TerminalText.line(failure.reason ?? "unknown reason", limit: 200)
                }
            }
            let retried = rows.compactMap { row in
                row.failedConnectAttempts.flatMap { $0 > 0 ? (row.host, $0) : nil }
            }
            if !retried.isEmpty {
                text +=
                    "\n\nhosts that reached the server only after failed connection attempts (a busy sshd or network):"
                for (host, count) in retried { text += "\n  \(host): \(count) failed since it last got through" }
            }
            let passedOver = rows.compactMap { row in row.skippedServers.map { (row.host, $0) } }
            if !passedOver.isEmpty {
                text += "\n\nservers passed over by the newest run (client.toml [server] and [[servers]]), and why:"
                for (host, skipped) in passedOver {
                    let reasons = skipped.map { "\($0.name): \($0.reason)" }.joined(separator: "; ")
                    text += "\n  \(host): \(TerminalText.line(reasons, limit: 400))"
                }
            }
            let behind = rows.compactMap { row in row.clientWarning.map { (row.host, $0) } }
            if !behind.isEmpty {
                text += "\n\nclients a major version behind:"
                for (host, warning) in behind { text += "\n  \(host): \(warning)" }
            }
            let warned = rows.filter { !$0.warnings.isEmpty }
            if !warned.isEmpty {
                text += "\n\nwarnings (files in logs/ that were not ingested):"
                for row in warned {
                    for warning in row.warnings { text += "\n  \(row.host): \(TerminalText.line(warning, limit: 300))" }
                }
            }
            return text
        }
    }
}
