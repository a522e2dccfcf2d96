import ArgumentParser
import FleetFiles
import FleetReview
import Foundation
import Inventory

extension Fleet {
    struct Metrics: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the hosts' status as Prometheus metrics.",
            discussion: """
                Ingests like `fleet status`, then prints per host the generations published and applied, the \
                state, when it was last seen, whether it needs a reboot, upload warnings and build failures, in \
                Prometheus' text format. With --output, writes the file atomically (for node-exporter's textfile \
                collector, e.g. from a systemd timer).
                """)

        @OptionGroup var global: GlobalOptions

        @Option(
            help: ArgumentHelp("Write to this file (replaced by rename) instead of standard output.", valueName: "file")
        )
        var output: String?

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let review = try Review(configuration: configuration)
            let snapshot = try await review.refresh(try review.hosts([]))
            let text = MetricsExposition.render(
                snapshot.hosts, buildFailures: try review.buildFailures(), at: snapshot.at)
            if let output {
                _ = try Self.write(text, to: output)
            } else {
                print(text, terminator: "")
            }
        }

        /// Writes the metrics to `file` (made absolute, which it returns) so that a reader sees the old file or
        /// the new one. Written first under a name that does not end in .prom (node-exporter reads every *.prom
        /// file of its directory, hidden ones too), then renamed. Also used by `fleet review --metrics-file`.
        static func write(_ text: String, to file: String) throws -> String {
            let path = FileIO.absolute(file)
            let staging = path + ".tmp"
            try FileIO.writeAtomically(Array(text.utf8), to: staging, mode: 0o644)
            try FileIO.renameDurably(staging, to: path)
            return path
        }
    }
}
