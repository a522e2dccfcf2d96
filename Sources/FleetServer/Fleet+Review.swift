import ArgumentParser
import FleetHooks
import FleetProtocol
import FleetReview
import Foundation
import Inventory
import Publishing

extension Fleet {
    /// `fleet review`: the review side on its own, for a timer. Named after the library call it makes once
    /// (``Review/refresh(_:now:)``), and because it does what a person reviewing the fleet would: read what came
    /// in, notice what changed, tell the hooks. Without it host events only fire when someone runs `fleet status`.
    struct ReviewCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "review",
            abstract: "Ingest the hosts' uploads once, fire the hook events, optionally write the metrics file.",
            discussion: """
                One refresh of every host, as `fleet status` does it, without the table: reads what the hosts \
                uploaded into state.db, tells the hooks in fleet.toml about hosts that applied, failed, rolled \
                back or went silent (once each), and with --metrics-file writes the text `fleet metrics` prints \
                (replaced by rename). Prints one summary line. Meant for fleet-review.timer (`fleet \
                install-units`), so that hooks fire without anyone running `fleet status`. Exits 0 when the \
                review was done, whatever state the hosts are in; 1 when it could not be (state.db unusable, the \
                metrics file not writable).
                """)

        @OptionGroup var global: GlobalOptions

        @Option(
            help: ArgumentHelp(
                "Also write the Prometheus metrics to this file (replaced by rename).", valueName: "file"))
        var metricsFile: String?

        @Flag(help: "Print the summary as JSON for scripts.")
        var json = false

        func validate() throws {
            if let metricsFile, metricsFile.isEmpty || metricsFile.hasSuffix("/") {
                throw ValidationError("--metrics-file \(String(reflecting: metricsFile)): must name a file")
            }
        }

        /// What `--json` prints.
        struct Output: Encodable {
            var at: String
            /// Hosts per state (every state, 0 included).
            var hosts: [String: Int]
            var ingest: IngestSummary
            /// The events this review announced, in order: `{"event": …, "host": …}`.
            var events: [Event]
            var metricsFile: String?

            struct Event: Encodable {
                var event: String
                var host: String?
            }
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let review = try Review(configuration: configuration)
            let snapshot = try await review.refresh(try review.hosts([]))
            // With rings: the timer promotes (or halts) the rollout as the hosts' reports say.
            let rollout = try await RolloutHealthMapping.advance(configuration, statuses: snapshot.hosts)
            var written: String?
            if let metricsFile {
                let text = MetricsExposition.render(
                    snapshot.hosts, buildFailures: try review.buildFailures(), at: snapshot.at)
                do {
                    written = try Metrics.write(text, to: metricsFile)
                } catch {
                    throw CommandFailure("--metrics-file \(metricsFile): cannot write it: \(error)")
                }
            }
            if json {
                try printJSON(
                    Output(
                        at: UTCTime.iso(nanoseconds: snapshot.at),
                        hosts: Dictionary(
                            uniqueKeysWithValues: HostState.allCases.map { state in
                                (state.rawValue, snapshot.hosts.filter { $0.state == state }.count)
                            }),
                        ingest: snapshot.ingest,
                        events: snapshot.events.map { .init(event: $0.event.rawValue, host: $0.host) },
                        metricsFile: written))
            } else {
                print(
                    Self.summary(snapshot, metricsFile: written)
                        + (rollout.map {
                            "; rollout \($0.report.status)" + ($0.report.ring.map { " at ring \($0)" } ?? "")
                        }
                            ?? ""))
            }
        }

        /// One line: hosts per state, what was ingested, the events fired, the metrics file.
        /// `reviewed 3 hosts (2 up to date, 1 silent); ingested 1 report, 0 logs, 1 heartbeat; 1 event: host-silent c`
        static func summary(_ snapshot: Review.Snapshot, metricsFile: String?) -> String {
            func count(_ number: Int, _ noun: String) -> String { "\(number) \(noun)\(number == 1 ? "" : "s")" }
            let states = HostState.allCases.compactMap { state -> String? in
                let number = snapshot.hosts.filter { $0.state == state }.count
                return number == 0 ? nil : "\(number) \(state.words)"
            }
            var line = "reviewed \(count(snapshot.hosts.count, "host"))"
            if !states.isEmpty { line += " (\(states.joined(separator: ", ")))" }
            let ingest = snapshot.ingest
            line += "; ingested \(count(ingest.reports, "report")), \(count(ingest.logs, "log")), "
            line += count(ingest.heartbeats, "heartbeat")
            if ingest.refused > 0 { line += ", refused \(ingest.refused)" }
            line += "; \(count(snapshot.events.count, "event"))"
            if !snapshot.events.isEmpty {
                line += ": " + snapshot.events.map { "\($0.event.rawValue) \($0.host ?? "-")" }.joined(separator: ", ")
            }
            if let metricsFile { line += "; metrics in \(metricsFile)" }
            return line
        }
    }
}
