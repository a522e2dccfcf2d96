import ArgumentParser
import FleetFiles
import FleetProtocol
import FleetReview
import Foundation
import Inventory

extension Fleet {
    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a host's reports and full run logs.",
            discussion: """
                Ingests the host's new uploads first, like `fleet status`, then prints its newest runs from \
                state.db, oldest first: each report (state, generation, times, reboot, reason) and the run's log. \
                Logs are kept in state.db (the first 256 KiB and last 768 KiB of each), so they are still shown \
                after the files were pruned from the chroot. Host-written text is printed with control \
                characters escaped.
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The host, as named in fleet.toml.")
        var host: String

        @Option(help: ArgumentHelp("How many of the newest runs to show.", valueName: "n"))
        var last: Int = 3

        @Flag(help: "Keep polling and print new runs as they arrive (Ctrl-C stops).")
        var follow = false

        @Option(help: ArgumentHelp("Seconds between polls with --follow.", valueName: "seconds"))
        var interval: Double = 5

        @Option(help: ArgumentHelp("With --follow, stop after this many polls.", valueName: "n"))
        var count: Int?

        @Flag(help: "Print JSON for scripts (with --follow, one JSON object per line and run).")
        var json = false

        @Flag(help: "Only the reports, not the logs.")
        var noLog = false

        func validate() throws {
            if last < 0 { throw ValidationError("--last must be 0 or more") }
            if !(0.05...86400).contains(interval) {
                throw ValidationError("--interval must be between 0.05 and 86400 seconds")
            }
            if let count, count < 1 { throw ValidationError("--count must be at least 1") }
            if count != nil && !follow { throw ValidationError("--count goes with --follow") }
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let review = try Review(configuration: configuration)
            let selected = try review.hosts([host])
            let snapshot = try await review.refresh(selected)
            var runs = try review.runs(of: selected[0], last: last)
            if json && !follow {
                return try printJSON(runs.map(trimmed))
            }
            if !json, let status = snapshot.hosts.first {
                print(Self.header(status))
                for warning in status.warnings { print("warning: \(TerminalText.line(warning, limit: 300))") }
                if runs.isEmpty { print("no reports from \(host) in state.db yet") }
            }
            show(runs)
            guard follow else { return }
            var lastID = try runs.last?.id ?? review.runs(of: selected[0], last: 1).last?.id ?? 0
            var polls = 1
            while count.map({ polls < $0 }) ?? true {
                try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
                _ = try await review.refresh(selected)
                runs = try review.runs(of: selected[0], last: 10_000, after: lastID)
                show(runs)
                lastID = runs.last?.id ?? lastID
                polls += 1
            }
        }

        private func trimmed(_ run: RunRecord) -> RunRecord {
            var run = run
            if noLog { run.log = nil }
            return run
        }

        private func show(_ runs: [RunRecord]) {
            for run in runs {
                if json {
                    if let line = try? jsonText(trimmed(run), pretty: false) { print(line) }
                } else {
                    print(Self.render(run, withLog: !noLog))
                }
            }
            fflush(nil)
        }

        static func header(_ status: HostStatus) -> String {
            var parts = [status.state.words]
            if let published = status.publishedGeneration { parts.append("generation \(published) published") }
            if let applied = status.appliedGeneration { parts.append("\(applied) applied") }
            parts.append(status.lastSeen.map { "last seen \($0)" } ?? "never seen")
            var text = "\(status.host): " + parts.joined(separator: ", ")
            if let reason = status.reason { text += "\n  \(TerminalText.line(reason, limit: 300))" }
            return text
        }

        /// The steps' durations, and what fetching the closure from the binary cache cost, when the report says.
        static func costLines(_ report: RunReport) -> [String] {
            let steps = [
                ("download", report.durations.download), ("build", report.durations.build),
                ("activation", report.durations.activation),
            ].compactMap { name, seconds in seconds.map { "\(name) \(String(format: "%.1f", $0)) s" } }
            var lines: [String] = []
            if !steps.isEmpty { lines.append("steps:     " + steps.joined(separator: ", ")) }
            if let cache = report.cache {
                lines.append("cache:     \(cache.summary), \(cache.filesFetched) files")
            }
            return lines
        }

        static func render(_ run: RunRecord, withLog: Bool) -> String {
            var lines = ["", "== \(run.report)  (received \(run.receivedAt))"]
            var state = "state:     \(run.state)"
            if let generation = run.generation {
                state += " (generation \(generation)"
                state += run.previousGeneration.map { ", running \($0) before)" } ?? ")"
            }
            lines.append(state)
            lines.append(
                "run:       \(TerminalText.line(run.startedAt)) to \(TerminalText.line(run.finishedAt)) "
                    + "(\(String(format: "%.1f", run.durationSeconds)) s)"
            )
            if let report = try? JSONDecoder().decode(RunReport.self, from: Data(run.reportJSON.utf8)) {
                lines += Self.costLines(report)
            }
            if let reboot = run.rebootNeeded { lines.append("reboot:    \(reboot ? "needed" : "not needed")") }
            if let reason = run.reason { lines.append("reason:    \(TerminalText.line(reason, limit: 2000))") }
            if withLog {
                if let name = run.logName, let log = run.log {
                    lines.append("-- \(name) (\(ByteCount.scaled(run.logSize ?? Int64(log.utf8.count))))")
                    lines.append(TerminalText.block(log.hasSuffix("\n") ? String(log.dropLast()) : log))
                    lines.append("-- end of \(name)")
                } else if let name = run.logName {
                    lines.append("-- \(TerminalText.line(name)): not received")
                }
            }
            return lines.joined(separator: "\n")
        }
    }
}
