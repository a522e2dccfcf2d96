import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import Inventory
import ServerStore
import Testing

/// `fleet status`'s ingest of hosts' `logs/`: incremental, bounded, and unmoved by hostile uploads. Files are
/// planted as root straight into the chroots (no sshd): what a host could upload, and worse.
@Suite("report ingest")
struct ReportIngestTests {
    @Test func aSecondIngestWithNothingNewReadsNothing() async throws {
        let review = try await ReviewFixture(hosts: ["a", "b"])
        defer { review.remove() }
        for index in 0..<5 { try review.plantReport("a", index) }
        try review.plantHeartbeat("a", applied: 1)
        try review.plantReport("b", 0, state: .failed, reason: "build failed")

        var snapshot = try await review.refresh()
        #expect(snapshot.ingest.reports == 6 && snapshot.ingest.logs == 6 && snapshot.ingest.heartbeats == 1)
        #expect(snapshot.ingest.filesRead == 13 && snapshot.ingest.refused == 0)
        #expect(try review.status(snapshot, "a").state == .upToDate)
        #expect(try review.status(snapshot, "b").state == .failed)

        snapshot = try await review.refresh()
        #expect(snapshot.ingest.filesRead == 0 && snapshot.ingest.hostsWithNewFiles == 0, "\(snapshot.ingest)")
        #expect(snapshot.ingest.hostsListed == 2)

        // A report is written once: rewriting one in place is not noticed (it is never opened again) …
        try review.plant("a", "report-\(ReviewFixture.stem(0))-g1.json", text: "garbage")
        snapshot = try await review.refresh()
        #expect(try snapshot.ingest.filesRead == 0 && review.status(snapshot, "a").warningCount == 0)
        // … a new heartbeat (a new file renamed into place) and a new report are read, and only they.
        try review.plantHeartbeat("a", applied: 1)
        try review.plantReport("b", 1, withLog: false)
        snapshot = try await review.refresh()
        #expect(snapshot.ingest.filesRead == 2 && snapshot.ingest.heartbeats == 1 && snapshot.ingest.reports == 1)
        #expect(try review.status(snapshot, "b").state == .upToDate)

        // The command does the same: nothing new, nothing read.
        let output = try await review.fixture.fleet(["status", "--json"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("\"filesRead\" : 0"))
    }

    @Test func symbolicLinksAndHardLinksAreNotFollowed() async throws {
        let review = try await ReviewFixture(hosts: ["a", "b"])
        defer { review.remove() }
        let secret = review.fixture.directory.path("secret.json")
        try FileIO.writeAtomically(Array("{\"format\":1,\"host\":\"a\",\"state\":\"applied\"}".utf8), to: secret)
        #expect(symlink(secret, review.logs("a") + "/report-\(ReviewFixture.stem(1))-g1.json") == 0)
        #expect(symlink("/etc/shadow", review.logs("a") + "/log-\(ReviewFixture.stem(1))-g1.txt") == 0)
        #expect(symlink(secret, review.logs("a") + "/heartbeat.json") == 0)
        #expect(link(secret, review.logs("a") + "/report-\(ReviewFixture.stem(2))-g1.json") == 0)
        try review.plantReport("b", 0)

        let snapshot = try await review.refresh()
        let a = try review.status(snapshot, "a")
        #expect(a.state == .neverSeen && a.warningCount == 4, "\(a.warnings)")
        #expect(a.warnings.filter { $0.contains("is a symbolic link: not followed") }.count == 3)
        #expect(a.warnings.contains { $0.contains("has 2 hard links") })
        #expect(snapshot.ingest.filesRead == 2, "b's report and log, and no file of a's")
        #expect(try review.status(snapshot, "b").state == .upToDate)
        let store = try StateStore(stateDirectory: review.fixture.stateDirectory)
        #expect(try store.schemaVersion == 4, "the current schema")
        // Refused files stay where they are, and are not read again.
        #expect(try review.listing("a").count == 4)
        let again = try await review.refresh()
        #expect(try again.ingest.filesRead == 0 && review.status(again, "a").warningCount == 4)
    }

    @Test func oversizedFilesAreNotReadPastTheirCap() async throws {
        let review = try await ReviewFixture(hosts: ["a", "b"])
        defer { review.remove() }
        // Sparse files: 10 GiB of report, 100 MiB of log and heartbeat, without the disk space.
        func sparse(_ name: String, size: Int64, prefix: String) throws {
            try review.plant("a", name, text: prefix)
            #expect(truncate(review.logs("a") + "/" + name, off_t(size)) == 0)
        }
        try sparse("report-\(ReviewFixture.stem(0))-g1.json", size: 10 << 30, prefix: "{")
        try sparse("heartbeat.json", size: 100 << 20, prefix: "{")
        let stem = ReviewFixture.stem(1) + "-g1"
        try review.plant("a", "log-\(stem).txt", text: "START of the log\n")
        let log = review.logs("a") + "/log-\(stem).txt"
        #expect(truncate(log, 100 << 20) == 0)
        let handle = try #require(FileHandle(forWritingAtPath: log))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("how it ENDED\n".utf8))
        try handle.close()
        try review.plantReport("a", 1, withLog: false) { $0.log = "log-\(stem).txt" }
        try review.plantReport("b", 0)

        let started = Date()
        let snapshot = try await review.refresh()
        #expect(Date().timeIntervalSince(started) < 10)
        let a = try review.status(snapshot, "a")
        #expect(
            a.warnings.contains {
                $0.contains("report-\(ReviewFixture.stem(0))-g1.json: is 10737418240 bytes, over the cap")
            })
        #expect(a.warnings.contains { $0.hasPrefix("heartbeat.json: is 104857600 bytes, over the cap") })
        #expect(a.state == .upToDate, "the good report of a is still ingested")
        // The log is kept, its first 256 KiB and last 768 KiB: at most the cap was read.
        #expect(snapshot.ingest.bytesRead < 2 << 20, "\(snapshot.ingest.bytesRead)")
        let runs = try review.review().runs(of: try #require(review.fixture.configuration().host(named: "a")), last: 5)
        let kept = try #require(runs.last?.log)
        #expect(kept.hasPrefix("START of the log") && kept.hasSuffix("how it ENDED\n"))
        #expect(kept.contains("bytes of this 104857613-byte log were not kept here"))
        #expect(kept.utf8.count < (1 << 20) + 200 && runs.last?.logSize == 104_857_613)
        #expect(try review.status(snapshot, "b").state == .upToDate)
    }

    @Test func namesFleetClientDoesNotWriteAreCountedAndLeftAlone() async throws {
        let review = try await ReviewFixture(hosts: ["a", "b"])
        defer { review.remove() }
        let bad = [
            "evil", "report.json", "report-x.json", "report-\(ReviewFixture.stem(0))-g01.json",
            "report-\(ReviewFixture.stem(0))-g0.json", "report-\(ReviewFixture.stem(0))-g1.json.bak",
            "log-\(ReviewFixture.stem(0))-g99999999999999999999999.txt", "..hidden", "heartbeat.JSON",
            "name with \u{1b}[2J escape", "new\nline",
        ]
        for name in bad { try review.plant("a", name, text: "{}") }
        try review.plantReport("a", 1)
        try review.plantReport("b", 0)

        let snapshot = try await review.refresh()
        let a = try review.status(snapshot, "a")
        #expect(a.state == .upToDate && a.warningCount == 1)
        #expect(
            a.warnings.first?.hasPrefix("\(bad.count) file(s) in logs/ with names fleet-client does not write") == true)
        #expect(snapshot.ingest.filesRead == 4, "only the two good reports and their logs were opened")
        #expect(try review.listing("a").count == bad.count + 2, "nothing is deleted")

        // The table shows host-written names with their control characters escaped.
        let output = try await review.fixture.fleet(["status"])
        #expect(output.exitCode == 0)
        #expect(!output.standardOutput.contains("\u{1b}"), "no escape sequence reaches the terminal")
    }

    @Test func malformedJSONIsRefusedWithAReason() async throws {
        let review = try await ReviewFixture(hosts: ["a", "b"])
        defer { review.remove() }
        let files: [(String, [UInt8])] = [
            ("not JSON", Array("this is not json".utf8)),
            ("truncated", Array("{\"format\":1,\"host\":\"a\",\"state\":".utf8)),
            ("deep", Array(String(repeating: "[", count: 200_000).utf8)),
            ("binary", [0xff, 0xfe, 0x00, 0x7b, 0x22]),
            ("missing keys", Array("{\"format\":1}".utf8)),
            (
                "unknown state",
                Array(
                    ("{\"format\":1,\"host\":\"a\",\"state\":\"exploded\",\"startedAt\":\"x\",\"finishedAt\":\"y\","
                        + "\"durations\":{\"total\":1},\"exitCodes\":{}}").utf8)
            ),
            ("wrong type", Array("{\"format\":\"one\",\"host\":\"a\"}".utf8)),
            ("empty", []),
        ]
        for (index, file) in files.enumerated() {
            try review.plant("a", "report-\(ReviewFixture.stem(index)).json", file.1)
        }
        try review.plant("a", "heartbeat.json", text: "{\"host\": 42}")
        try review.plantReport("b", 0)

        let snapshot = try await review.refresh()
        let a = try review.status(snapshot, "a")
        #expect(a.warningCount == files.count + 1, "\(a.warnings)")
        #expect(
            a.warnings.allSatisfy { $0.contains("is not a valid report") || $0.contains("is not a valid heartbeat") })
        #expect(a.state == .neverSeen)
        #expect(snapshot.ingest.refused == files.count + 1)
        #expect(try review.status(snapshot, "b").state == .upToDate)
    }

    @Test func reportsThatLieAreRefused() async throws {
        let review = try await ReviewFixture(hosts: ["a", "b"])
        defer { review.remove() }
        try review.plantReport("a", 0, withLog: false) { $0.host = "b" }
        try review.plantReport("a", 1, generation: 99, withLog: false)
        try review.plantReport("a", 2, generation: 1, withLog: false) { $0.generation = nil }
        try review.plantReport("a", 3, withLog: false) { $0.durations.total = -5 }
        try review.plantReport("a", 4, withLog: false) { $0.durations.build = 1e12 }
        try review.plantReport("a", 5, withLog: false) { $0.finishedAt = "2026-11-21T00:00:00Z" }
        try review.plantReport("a", 6, withLog: false) { $0.startedAt = "yesterday" }
        try review.plantReport("a", 7, withLog: false) { $0.startedAt = "2026-02-31T00:00:00Z" }
        try review.plantReport("a", 8, withLog: false) { $0.log = "../../etc/passwd" }
        try review.plantReport("a", 9, withLog: false) { $0.format = 7 }
        try review.plantReport("a", 10, state: .failed, generation: 1, withLog: false) { $0.previousGeneration = 5 }
        let beat = Heartbeat(
            host: "a", at: "2026-11-22T02:00:00Z", appliedGeneration: 42, seenGeneration: 1, failedGeneration: nil,
            lastResult: .unchanged, reason: nil, rebootNeeded: false)
        try review.plant("a", "heartbeat.json", beat.encoded())
        try review.plantReport("b", 0)

        let snapshot = try await review.refresh()
        let a = try review.status(snapshot, "a")
        #expect(a.state == .neverSeen && a.warningCount == 12, "\(a.warnings)")
        let warnings = a.warnings.joined(separator: "\n")
        for fragment in [
            "claims to come from host \"b\", but it is in a's logs/",
            "its generation 99 was never published to a (the newest is 1)",
            "its name says generation 1 but it says none",
            "its total duration -5.0 s is absurd", "its build duration 1000000000000.0 s is absurd",
            "finished (2026-11-21T00:00:00Z) before it started", "are not UTC times",
            "it names its log \"../../etc/passwd\", which is not a log file name", "has format 7",
            "its previousGeneration 5 was never published",
            "heartbeat.json: its appliedGeneration 42 was never published",
        ] {
            #expect(warnings.contains(fragment), "missing: \(fragment)")
        }
        #expect(warnings.components(separatedBy: "are not UTC times").count == 3, "yesterday and 31 February")
        #expect(try review.status(snapshot, "b").state == .upToDate)

        // More lies later: still never seen (refused files are no sign of life).
        try review.plantReport("a", 20, withLog: false) { $0.host = "c" }
        let again = try await review.refresh()
        #expect(try review.status(again, "a").state == .neverSeen && review.status(again, "a").warningCount == 13)
    }

    /// Times a host writes must be possible: not ahead of the server's clock when the file arrived (5 minutes of
    /// skew allowed), not before the host's previous word; and what a host says it runs never goes back except
    /// by a rollback report. Before, a report dated 2099 or 1970 moved APPLIED from 2 back to 1.
    @Test func impossibleTimesAreRefusedAndAppliedNeverGoesBack() async throws {
        let review = try await ReviewFixture(hosts: ["a"])
        defer { review.remove() }
        try review.fixture.write("hosts/a/extra.nix", "{ }\n")
        #expect(try await review.fixture.fleet(["publish"]).exitCode == 0)
        func at(_ minute: Int) -> String { String(format: "2026-11-22T03:%02d:00Z", minute) }
        func times(_ minute: Int) -> (inout RunReport) -> Void {
            { report in
                report.startedAt = at(minute)
                report.finishedAt = at(minute)
            }
        }
        try review.plantReport("a", 0, generation: 1, withLog: false, edit: times(0))
        try review.plantReport("a", 1, generation: 2, withLog: false) {
            times(10)(&$0)
            $0.previousGeneration = 1
        }
        var snapshot = try await review.refresh()
        #expect(try review.status(snapshot, "a").appliedGeneration == 2)

        let future = try review.plantReport("a", 2, state: .failed, generation: 2, withLog: false) {
            $0.startedAt = "2099-01-01T00:00:00Z"
            $0.finishedAt = "2099-01-01T00:00:00Z"
            $0.previousGeneration = 1
        }
        let past = try review.plantReport("a", 3, state: .failed, generation: 2, withLog: false) {
            $0.startedAt = "1970-01-01T00:00:00Z"
            $0.finishedAt = "1970-01-01T00:00:00Z"
            $0.previousGeneration = 1
        }
        let backwards = try review.plantReport("a", 4, state: .unreachable, generation: nil, withLog: false) {
            times(20)(&$0)
            $0.previousGeneration = 1
        }
        let beat = Heartbeat(
            host: "a", at: "2099-01-01T00:00:00Z", appliedGeneration: 2, seenGeneration: 2, failedGeneration: nil,
            lastResult: .unchanged, reason: nil, rebootNeeded: false)
        try FileIO.writeAtomically(beat.encoded(), to: review.logs("a") + "/heartbeat.json", mode: 0o640)
        snapshot = try await review.refresh()
        let a = try review.status(snapshot, "a")
        #expect(a.appliedGeneration == 2 && a.state == .upToDate, "\(a)")
        let warnings = a.warnings.joined(separator: "\n")
        for fragment in [
            "\(future): it says it finished at 2099-01-01T00:00:00Z, after it arrived",
            "\(past): it says it finished at 1970-01-01T00:00:00Z, before the host's previous report",
            "\(backwards): it says generation 1 is applied, but the host's previous report",
            "heartbeat.json: it says it was written at 2099-01-01T00:00:00Z, after it arrived",
        ] {
            #expect(warnings.contains(fragment), "missing: \(fragment)\nin: \(warnings)")
        }

        // A rollback report may go back; then the next report is judged against it.
        try review.plantReport("a", 5, state: .rolledBack, generation: 2, withLog: false) {
            times(30)(&$0)
            $0.previousGeneration = 1
        }
        snapshot = try await review.refresh()
        #expect(try review.status(snapshot, "a").appliedGeneration == 1)
        #expect(try review.status(snapshot, "a").state == .rolledBack)
    }

    /// After an unreachable (or any) report, the generation shown is the one the newest statement gives, by
    /// the server's receive time: not an older heartbeat's (a host running 2 was shown as APPLIED 1).
    @Test func theNewestStatementWinsWhateverItsKind() async throws {
        let review = try await ReviewFixture(hosts: ["a"])
        defer { review.remove() }
        try review.fixture.write("hosts/a/extra.nix", "{ }\n")
        #expect(try await review.fixture.fleet(["publish"]).exitCode == 0)
        try review.plantHeartbeat("a", applied: 1)
        try review.age("a", "heartbeat.json", secondsAgo: 300)
        let applied = try review.plantReport("a", 0, generation: 2, withLog: false) {
            $0.startedAt = "2026-11-22T02:10:00Z"
            $0.finishedAt = "2026-11-22T02:10:00Z"
            $0.previousGeneration = 1
        }
        try review.age("a", applied, secondsAgo: 200)
        try review.plantReport("a", 1, state: .unreachable, generation: nil, withLog: false) {
            $0.startedAt = "2026-11-22T02:20:00Z"
            $0.finishedAt = "2026-11-22T02:20:00Z"
            $0.previousGeneration = 2
            $0.reason = "the server did not answer"
        }
        let snapshot = try await review.refresh()
        let a = try review.status(snapshot, "a")
        #expect(a.warningCount == 0, "\(a.warnings)")
        #expect(a.appliedGeneration == 2 && a.state == .upToDate && a.lastResult == "unreachable", "\(a)")
        let metrics = try await review.fixture.fleet(["metrics"])
        #expect(
            metrics.standardOutput.contains("fleet_host_applied_generation{host=\"a\"} 2"), "\(metrics.standardOutput)")
    }

    @Test func directoriesFIFOsAndSocketsAreRefusedWithoutBlocking() async throws {
        let review = try await ReviewFixture(hosts: ["a", "b"])
        defer { review.remove() }
        #expect(mkdir(review.logs("a") + "/report-\(ReviewFixture.stem(0))-g1.json", 0o700) == 0)
        #expect(mkfifo(review.logs("a") + "/report-\(ReviewFixture.stem(1))-g1.json", 0o600) == 0)
        #expect(mkfifo(review.logs("a") + "/log-\(ReviewFixture.stem(1))-g1.txt", 0o600) == 0)
        #expect(mkfifo(review.logs("a") + "/heartbeat.json", 0o600) == 0)
        let socketPath = review.logs("a") + "/report-\(ReviewFixture.stem(2))-g1.json"
        let socketFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in socketPath.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0)
        defer { close(socketFD) }
        try review.plantReport("b", 0)

        let started = Date()
        let snapshot = try await review.refresh()
        #expect(Date().timeIntervalSince(started) < 10, "a FIFO must not block the open or the read")
        let a = try review.status(snapshot, "a")
        #expect(a.warningCount == 5, "\(a.warnings)")
        #expect(a.warnings.contains { $0.contains("is a directory") })
        #expect(a.warnings.filter { $0.contains("is a FIFO") }.count == 3)
        #expect(a.warnings.contains { $0.contains("is a socket or device") })
        #expect(try review.status(snapshot, "b").state == .upToDate)
    }

    @Test func thousandsOfFilesFromOneHostDoNotStopTheOthers() async throws {
        let review = try await ReviewFixture(hosts: ["a", "b"])
        defer { review.remove() }
        // 3,000 junk names, and 1,500 well-named reports that are not JSON.
        for index in 0..<3000 { try review.plant("a", "junk-\(index)", text: "x") }
        for index in 0..<1500 {
            try review.plant("a", "report-\(String(format: "20261122T%09dZ", index)).json", text: "{")
        }
        try review.plantReport("b", 0)
        var limits = IngestLimits()
        limits.newFilesPerRun = 1000

        let started = Date()
        var snapshot = try await review.refresh(limits: limits)
        #expect(Date().timeIntervalSince(started) < 20)
        var a = try review.status(snapshot, "a")
        #expect(a.warnings.contains { $0.hasPrefix("3000 file(s) in logs/ with names fleet-client does not write") })
        #expect(
            a.warnings.contains { $0 == "1500 new reports and logs in logs/: 1000 read now, the rest in later runs" })
        #expect(a.warningCount == 1000 + 2, "each refused file is counted")
        #expect(a.warnings.count == HostStatus.shownWarnings && a.warnings.last == "… and 983 more")
        #expect(try review.status(snapshot, "b").state == .upToDate)
        snapshot = try await review.refresh(limits: limits)
        a = try review.status(snapshot, "a")
        #expect(snapshot.ingest.filesRead == 500 && a.warningCount == 1500 + 1)
        snapshot = try await review.refresh(limits: limits)
        #expect(snapshot.ingest.filesRead == 0)

        // A logs/ with more entries than are listed is cut short, and says so.
        limits.listedNames = 1000
        snapshot = try await review.refresh(limits: limits)
        a = try review.status(snapshot, "a")
        #expect(a.warnings.contains { $0.hasPrefix("logs/ holds more than 1000 entries") })
        #expect(try review.status(snapshot, "b").state == .upToDate)
    }

    @Test func ingestedFilesBeyondLogsKeepArePrunedAndNothingElse() async throws {
        let review = try await ReviewFixture(hosts: ["a"], server: "logs_keep = 2\nreport_history = 4")
        defer { review.remove() }
        var reports: [String] = []
        for index in 0..<6 { reports.append(try review.plantReport("a", index)) }
        try review.plant("a", "report-\(ReviewFixture.stem(10))-g1.json", text: "not json")
        try review.plant("a", "stray", text: "?")
        try review.plant("a", ".fleet-tmp-123-report-x.json", text: "{")
        try review.plantHeartbeat("a", applied: 1)

        let snapshot = try await review.refresh()
        #expect(snapshot.ingest.reports == 6 && snapshot.ingest.pruned == 8)
        let left = try review.listing("a")
        #expect(
            left.filter { $0.hasPrefix("report-") } == Array(reports.suffix(2)) + [
                "report-\(ReviewFixture.stem(10))-g1.json"
            ])
        #expect(left.filter { $0.hasPrefix("log-") }.count == 2)
        #expect(
            left.contains("stray") && left.contains("heartbeat.json") && left.contains(".fleet-tmp-123-report-x.json"))
        // state.db keeps report_history of them, with their logs.
        let host = try #require(review.fixture.configuration().host(named: "a"))
        let runs = try review.review().runs(of: host, last: 10)
        #expect(runs.map(\.report) == Array(reports.suffix(4)))
        #expect(runs.allSatisfy { $0.log?.contains("log of run") == true })
        let again = try await review.refresh()
        #expect(again.ingest.filesRead == 0 && again.ingest.pruned == 0)
    }
}
