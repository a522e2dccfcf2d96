import CommandRunner
import FleetFiles
import FleetHooks
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import Inventory
import ServerStore
import Testing

/// `fleet status`, `logs` and `metrics` on planted uploads: every state and its reason, the silence rule,
/// events once, hooks, Prometheus text, `--watch` and `--follow`.
@Suite("fleet status, logs, metrics and hooks")
struct FleetStatusTests {
    @Test func everyStateWithItsReason() async throws {
        let review = try await ReviewFixture(
            hosts: ["back", "broke", "fresh", "never", "pend", "quiet", "refuse"],
            defaults: "poll_interval_seconds = 60",
            host: ["quiet": "silent_after_intervals = 2"])
        defer { review.remove() }
        try review.fixture.write("hosts/pend/extra.nix", "{ }\n")
        #expect(try await review.fixture.fleet(["publish", "pend"]).exitCode == 0)

        try review.plantReport("fresh", 0)
        try review.age("fresh", "report-\(ReviewFixture.stem(0))-g1.json", secondsAgo: 30)
        try review.plantHeartbeat("fresh", applied: 1, rebootNeeded: true)
        try review.plantHeartbeat("pend", applied: 1)
        try review.plantReport("broke", 0, state: .failed, reason: "nix build exited with status 1: error: a typo")
        try review.age("broke", "report-\(ReviewFixture.stem(0))-g1.json", secondsAgo: 30)
        // The heartbeat is newer than the report; the failure's reason still comes from the report.
        try review.plantHeartbeat("broke", applied: nil, failed: 1, reason: "generation 1 failed at … (…)")
        try review.plantReport("back", 0, state: .rolledBack, reason: "not confirmed within 90 s (3 attempts)")
        try review.plantHeartbeat("quiet", applied: 1)
        try review.age("quiet", "heartbeat.json", secondsAgo: 300)
        try review.plantReport("refuse", 0, state: .refused, reason: "the snapshot's SHA-256 does not match")

        let rows = Dictionary(uniqueKeysWithValues: try await review.statusJSON().map { ($0.host, $0) })
        #expect(rows["fresh"]?.state == .upToDate && rows["fresh"]?.rebootNeeded == true)
        #expect(rows["fresh"]?.appliedGeneration == 1 && rows["fresh"]?.publishedGeneration == 1)
        #expect(rows["pend"]?.state == .pending && rows["pend"]?.publishedGeneration == 2)
        #expect(rows["pend"]?.appliedGeneration == 1)
        #expect(rows["broke"]?.state == .failed && rows["broke"]?.failedGeneration == 1)
        #expect(rows["broke"]?.reason == "nix build exited with status 1: error: a typo")
        #expect(rows["back"]?.state == .rolledBack && rows["back"]?.reason?.hasPrefix("not confirmed") == true)
        #expect(rows["quiet"]?.state == .silent && rows["quiet"]?.silentAfterSeconds == 120)
        #expect(
            rows["quiet"]?.reason?.contains("silent after 2 min: 2 × 60 s polls") == true,
            "\(rows["quiet"]?.reason ?? "")")
        #expect(rows["never"]?.state == .neverSeen && rows["never"]?.lastSeen == nil)
        #expect(rows["refuse"]?.state == .failed && rows["refuse"]?.reason?.hasPrefix("refused: the snapshot") == true)

        let table = try await review.fixture.fleet(["status"])
        #expect(table.exitCode == 0)
        let lines = table.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("HOST") == true && lines.first?.contains("LAST SEEN") == true)
        #expect(lines.contains { $0.hasPrefix("back ") && $0.contains("rolled back") && $0.contains("not confirmed") })
        #expect(lines.contains { $0.hasPrefix("quiet ") && $0.contains("silent") && $0.contains("5 min ago") })
        #expect(lines.contains { $0.hasPrefix("fresh ") && $0.contains("up to date") && $0.contains("yes") })
        #expect(
            table.standardOutput.contains("1 up to date, 1 pending, 2 failed, 1 rolled back, 1 silent, 1 never seen"))

        // Only some hosts; an unknown one is named.
        #expect(try await review.statusJSON(["fresh", "never"]).map(\.host) == ["fresh", "never"])
        let unknown = try await review.fixture.fleet(["status", "nosuch"])
        #expect(unknown.exitCode != 0 && unknown.standardError.contains("no host \"nosuch\""))
    }

    @Test func aHostIsSilentAfterItsOwnNumberOfPollIntervals() async throws {
        let review = try await ReviewFixture(
            hosts: ["a", "b", "c"], defaults: "poll_interval_seconds = 100\nsilent_after_intervals = 3",
            host: ["b": "poll_interval_seconds = 10", "c": "silent_after_intervals = 1"])
        defer { review.remove() }
        for host in ["a", "b", "c"] {
            try review.plantHeartbeat(host, applied: 1)
            try review.age(host, "heartbeat.json", secondsAgo: 200)
        }
        var rows = try await review.statusJSON()
        #expect(rows.map(\.state) == [.upToDate, .silent, .silent], "limits 300 s, 30 s, 100 s")
        // Heard from again: no longer silent.
        try review.plantHeartbeat("b", applied: 1)
        rows = try await review.statusJSON()
        #expect(rows.map(\.state) == [.upToDate, .upToDate, .silent])
        // The clock moves on: a is silent too.
        let snapshot = try await review.refresh(now: ReviewTime.now() + 400 * ReviewTime.nanosecondsPerSecond)
        #expect(try review.status(snapshot, "a").state == .silent)
    }

    /// A hook that appends `$FLEET_EVENT $FLEET_HOST <json>` to `file`.
    static func recordingHook(_ review: ReviewFixture, file: String, events: String? = nil) throws -> String {
        let script = review.fixture.directory.path("hook.sh")
        try FileIO.writeAtomically(
            Array("#!/bin/sh\nprintf '%s %s ' \"$FLEET_EVENT\" \"$FLEET_HOST\" >> \(file)\ncat >> \(file)\n".utf8),
            to: script, mode: 0o755)
        return "[[hooks]]\ncommand = [\"\(script)\"]\n" + (events.map { "events = \($0)\n" } ?? "")
    }

    static func lines(_ file: String) -> [String] {
        ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    @Test func eachEventIsRecordedAndGivenToTheHooksOnce() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let all = directory.path("all.log")
        let failures = directory.path("failures.log")
        var toml = ""
        let review = try await ReviewFixture(hosts: ["a", "b", "c", "d"], defaults: "poll_interval_seconds = 60")
        defer { review.remove() }
        toml += try Self.recordingHook(review, file: all)
        let failuresScript = directory.path("failures.sh")
        try FileIO.writeAtomically(Array("#!/bin/sh\ncat >> \(failures)\n".utf8), to: failuresScript, mode: 0o755)
        toml += "[[hooks]]\ncommand = [\"\(failuresScript)\"]\nevents = [\"host-failed\", \"host-rolled-back\"]\n"
        try review.fixture.write(
            "fleet.toml", try String(contentsOfFile: review.fixture.repository + "/fleet.toml", encoding: .utf8) + toml)

        try review.plantReport("a", 0)
        try review.plantReport("b", 0, state: .failed, reason: "it broke")
        for _ in 0..<3 { #expect(try await review.fixture.fleet(["status"]).exitCode == 0) }
        var seen = Self.lines(all)
        #expect(seen.count == 2, "\(seen)")
        #expect(seen.contains { $0.hasPrefix("host-applied a {") })
        let failed = try #require(seen.first { $0.hasPrefix("host-failed b ") })
        let event = try JSONDecoder().decode(
            HookEvent.self, from: Data(failed.dropFirst("host-failed b ".count).utf8))
        #expect(event.event == .hostFailed && event.host == "b" && event.generation == 1 && event.reason == "it broke")
        #expect(event.format == 1 && UTCTime.parseISO(event.at) != nil)
        #expect(event.details["report"] == "report-\(ReviewFixture.stem(0))-g1.json")
        #expect(Self.lines(failures).count == 1, "the second hook only wants failures")

        // A new generation applied, a rollback, a silence: one event each, however often status runs.
        try review.fixture.write("hosts/a/extra.nix", "{ }\n")
        #expect(try await review.fixture.fleet(["publish", "a"]).exitCode == 0)
        try review.plantReport("a", 1, generation: 2)
        try review.plantReport("c", 1, state: .rolledBack, reason: "not confirmed")
        try review.plantHeartbeat("d", applied: 1)
        try review.age("d", "heartbeat.json", secondsAgo: 3600)
        for _ in 0..<2 { #expect(try await review.fixture.fleet(["status"]).exitCode == 0) }
        seen = Self.lines(all)
        #expect(seen.count == 6, "\(seen)")
        #expect(seen[2...].contains { $0.hasPrefix("published a ") }, "fleet publish gives the hooks its event too")
        #expect(seen[2...].contains { $0.hasPrefix("host-applied a ") && $0.contains("\"generation\":2") })
        #expect(seen[2...].contains { $0.hasPrefix("host-rolled-back c ") })
        #expect(seen[2...].contains { $0.hasPrefix("host-silent d ") && $0.contains("\"silentAfterSeconds\":\"180\"") })
        #expect(Self.lines(failures).count == 2)

        let store = try StateStore(stateDirectory: review.fixture.stateDirectory)
        let kinds = try store.events().map(\.kind).filter { $0.hasPrefix("host-") }
        #expect(kinds.sorted() == ["host-applied", "host-applied", "host-failed", "host-rolled-back", "host-silent"])
    }

    @Test func aHostServedAStaleManifestIsAnnouncedOnceEachTimeItIsFoundStale() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let all = directory.path("stale.log")
        let review = try await ReviewFixture(hosts: ["s"], defaults: "poll_interval_seconds = 60")
        defer { review.remove() }
        try review.fixture.write(
            "fleet.toml",
            try String(contentsOfFile: review.fixture.repository + "/fleet.toml", encoding: .utf8)
                + Self.recordingHook(review, file: all, events: "[\"host-stale\"]"))
        let reason =
            "the manifest for s expired at 2026-11-20T00:00:00Z (server 192.0.2.7 port 22); nothing was applied"
        let first = try review.plantReport("s", 0, state: .stale, reason: reason)
        try review.age("s", first, secondsAgo: 120)
        for _ in 0..<3 { #expect(try await review.fixture.fleet(["status"]).exitCode == 0) }
        var seen = Self.lines(all)
        #expect(seen.count == 1, "\(seen)")
        let line = try #require(seen.first)
        let event = try JSONDecoder().decode(HookEvent.self, from: Data(line.dropFirst("host-stale s ".count).utf8))
        #expect(event.event == .hostStale && event.host == "s" && event.reason == reason, "\(event)")
        #expect(event.details["report"] == first, "\(event.details)")

        // Up to date again: nothing; stale again later: announced again, once.
        let applied = try review.plantReport("s", 1)
        try review.age("s", applied, secondsAgo: 60)
        for _ in 0..<2 { #expect(try await review.fixture.fleet(["status"]).exitCode == 0) }
        #expect(Self.lines(all).count == 1)
        try review.plantReport("s", 2, state: .stale, reason: reason)
        for _ in 0..<2 { #expect(try await review.fixture.fleet(["status"]).exitCode == 0) }
        seen = Self.lines(all)
        #expect(seen.count == 2 && seen.allSatisfy { $0.hasPrefix("host-stale s {") }, "\(seen)")
        let store = try StateStore(stateDirectory: review.fixture.stateDirectory)
        #expect(try store.events().map(\.kind).filter { $0 == "host-stale" }.count == 2)
    }

    @Test func aFailingOrHangingHookIsLoggedAndHoldsNothingUp() async throws {
        let review = try await ReviewFixture(
            hosts: ["a", "b", "c"],
            extraToml: """
                [[hooks]]
                command = ["/bin/sh", "-c", "echo 'no route to chat' >&2; exit 3"]
                events = ["host-applied"]
                [[hooks]]
                command = ["/bin/sleep", "30"]
                timeout_seconds = 1
                events = ["host-applied"]
                [[hooks]]
                command = ["/nonexistent/hook"]
                events = ["host-applied"]

                """)
        defer { review.remove() }
        for host in ["a", "b", "c"] { try review.plantReport(host, 0) }
        let started = Date()
        let output = try await review.fixture.fleet(["status"])
        let elapsed = Date().timeIntervalSince(started)
        #expect(output.exitCode == 0 && output.standardOutput.contains("3 up to date"))
        // Two timeouts of 1 s (and the kill), then the hanging hook is skipped: far less than its 30 s sleep,
        // with room for a loaded machine.
        #expect(elapsed < 25, "the hanging hook held the status up: \(elapsed) s")
        #expect(output.standardError.contains("exited with status 3: \"no route to chat\""))
        #expect(output.standardError.contains("did not finish within 1 s and was killed"))
        #expect(output.standardError.contains("timed out 2 times in a row"))
        #expect(output.standardError.contains("/nonexistent/hook"))
        let store = try StateStore(stateDirectory: review.fixture.stateDirectory)
        let failed = try store.events().filter { $0.kind == "hook-failed" }
        #expect(failed.count == 9, "three hooks, three events each")
        #expect(failed.allSatisfy { $0.detail.contains("\"event\":\"host-applied\"") })
    }

    @Test func hookRunnerSendsTheEventAsJSONAndTheEnvironment() async throws {
        let review = try await ReviewFixture(hosts: ["a"])
        defer { review.remove() }
        let file = review.fixture.directory.path("events.log")
        let toml = try Self.recordingHook(review, file: file, events: "[\"published\", \"build-failed\"]")
        try review.fixture.write(
            "fleet.toml", try String(contentsOfFile: review.fixture.repository + "/fleet.toml", encoding: .utf8) + toml)
        let configuration = try review.fixture.configuration()
        let runner = HookRunner(configuration)
        let deliveries = await runner.fire([
            .published(
                host: "a", generation: 2, previousGeneration: 1, sourceCommit: "abc123", at: "2026-11-22T03:00:00Z"),
            HookEvent(.hostApplied, host: "a", generation: 2, at: "2026-11-22T03:00:00Z"),
            .buildFailed(
                host: "a", reason: "error: attribute 'foo' missing", keptGeneration: 2, at: "2026-11-22T03:01:00Z"),
        ])
        #expect(deliveries.count == 2 && deliveries.allSatisfy { $0.failure == nil })
        let lines = Self.lines(file)
        #expect(lines.count == 2)
        let published =
            "published a {\"at\":\"2026-11-22T03:00:00Z\",\"details\":{\"previousGeneration\":\"1\","
            + "\"sourceCommit\":\"abc123\"},\"event\":\"published\",\"format\":1,\"generation\":2,\"host\":\"a\"}"
        #expect(lines.first == published, "the documented shape: one line, sorted keys")
        #expect(
            lines.last?.hasPrefix("build-failed a {") == true && lines.last?.contains("attribute 'foo' missing") == true
        )
    }

    @Test func metricsArePrometheusTextWrittenAtomically() async throws {
        let review = try await ReviewFixture(hosts: ["a", "b", "c"])
        defer { review.remove() }
        try review.plantReport("a", 0)
        try review.plantReport("b", 0, state: .failed, reason: "x")
        let store = try StateStore(stateDirectory: review.fixture.stateDirectory)
        try store.recordEvent(host: try HostName("b"), kind: .buildFailed, detail: ["reason": "x"])
        let file = review.fixture.directory.path("fleet.prom")
        let output = try await review.fixture.fleet(["metrics", "--output", file])
        #expect(output.exitCode == 0 && output.standardOutput.isEmpty, "\(output.standardError)")
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(try FileStatus.of(file)?.permissions == 0o644)
        let besides = try FileIO.listDirectory(review.fixture.directory.path("")).filter { $0.contains("prom") }
        #expect(besides == ["fleet.prom"], "no temporary file is left beside it: \(besides)")
        // Every sample belongs to a family announced with HELP and TYPE; every value is a number.
        var announced: Set<String> = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") { continue }
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                #expect(parts.count == 4 && ["gauge", "counter"].contains(parts[3]))
                announced.insert(String(parts[2]))
                continue
            }
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            #expect(announced.contains(name), "\(line)")
            #expect(Double(line.split(separator: " ").last ?? "") != nil, "\(line)")
        }
        for sample in [
            "fleet_host_published_generation{host=\"a\"} 1", "fleet_host_applied_generation{host=\"a\"} 1",
            "fleet_host_state{host=\"a\",state=\"up-to-date\"} 1", "fleet_host_state{host=\"b\",state=\"failed\"} 1",
            "fleet_host_state{host=\"c\",state=\"never-seen\"} 1", "fleet_host_build_failures_total{host=\"b\"} 1",
            "fleet_host_build_failures_total{host=\"a\"} 0", "fleet_hosts{state=\"up-to-date\"} 1",
            "fleet_host_up_to_date{host=\"b\"} 0",
        ] {
            #expect(text.contains(sample + "\n"), "missing \(sample)")
        }
        #expect(text.contains("fleet_host_last_seen_timestamp_seconds{host=\"a\"} "))
        #expect(!text.contains("fleet_host_last_seen_timestamp_seconds{host=\"c\"}"))
        let printed = try await review.fixture.fleet(["metrics"])
        #expect(printed.standardOutput.hasPrefix("# HELP fleet_host_published_generation"))
    }

    @Test func watchRedrawsWhenSomethingChanges() async throws {
        let review = try await ReviewFixture(hosts: ["a"])
        defer { review.remove() }
        var output = try await review.fixture.fleet(["status", "--watch", "--count", "4", "--interval", "0.1"])
        #expect(output.exitCode == 0)
        #expect(output.standardOutput.components(separatedBy: "HOST ").count == 2, "one frame: nothing changed")

        let fixture = review.fixture
        let watching = Task { try await fixture.fleet(["status", "--watch", "--count", "60", "--interval", "0.1"]) }
        try await Task.sleep(for: .seconds(2))
        // Without a log: a watch poll between the log's upload and the report's would draw a frame of its own.
        try review.plantReport("a", 0, withLog: false)
        output = try await watching.value
        #expect(output.exitCode == 0, "\(output.standardError)")
        let frames = output.standardOutput.components(separatedBy: "HOST ").dropFirst()
        #expect(frames.count == 2, "\(output.standardOutput)")
        #expect(frames.first?.contains("never seen") == true && frames.last?.contains("up to date") == true)

        output = try await review.fixture.fleet(["status", "--watch", "--json", "--count", "2", "--interval", "0.1"])
        #expect(output.standardOutput.split(separator: "\n").count == 1, "one JSON object per change, on one line")
        #expect(try await review.fixture.fleet(["status", "--count", "2"]).exitCode != 0, "--count needs --watch")
    }

    @Test func logsShowReportsAndTheirLogsAndFollow() async throws {
        let review = try await ReviewFixture(hosts: ["a", "b"])
        defer { review.remove() }
        for index in 0..<3 { try review.plantReport("a", index) }
        try review.plantReport("a", 3, state: .failed, reason: "boom \u{1b}]0;pwned\u{07}") { report in
            report.durations.total = 12.5
        }
        try review.plant("a", "log-\(ReviewFixture.stem(3))-g1.txt", text: "step 1\n\u{1b}[31merror\u{1b}[0m: boom\n")

        var output = try await review.fixture.fleet(["logs", "a", "--last", "2"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let text = output.standardOutput
        #expect(text.hasPrefix("a: failed, generation 1 published, last seen"))
        #expect(
            !text.contains("report-\(ReviewFixture.stem(1))-g1.json")
                && text.contains("report-\(ReviewFixture.stem(2))-g1.json"))
        #expect(text.contains("state:     failed (generation 1)") && text.contains("(12.5 s)"))
        #expect(text.contains("-- log-\(ReviewFixture.stem(3))-g1.txt") && text.contains("log of run 2 on a"))
        #expect(text.contains("\\u{1b}[31merror\\u{1b}[0m: boom"), "escapes are shown, not sent")
        #expect(!text.contains("\u{1b}") && !text.contains("\u{07}"))

        output = try await review.fixture.fleet(["logs", "a", "--last", "10", "--json"])
        let runs = try JSONDecoder().decode([RunRecord].self, from: Data(output.standardOutput.utf8))
        #expect(runs.map(\.state) == ["applied", "applied", "applied", "failed"])
        #expect(runs.last?.log == "step 1\n\u{1b}[31merror\u{1b}[0m: boom\n" && runs.last?.durationSeconds == 12.5)
        output = try await review.fixture.fleet(["logs", "a", "--no-log"])
        #expect(!output.standardOutput.contains("log of run"))
        output = try await review.fixture.fleet(["logs", "b"])
        #expect(output.standardOutput.contains("b: never seen") && output.standardOutput.contains("no reports from b"))

        let fixture = review.fixture
        let following = Task {
            try await fixture.fleet(["logs", "b", "--follow", "--count", "40", "--interval", "0.1"])
        }
        try await Task.sleep(for: .seconds(2))
        try review.plantReport("b", 7, reason: "late")
        output = try await following.value
        #expect(output.exitCode == 0)
        #expect(
            output.standardOutput.contains("report-\(ReviewFixture.stem(7))-g1.json")
                && output.standardOutput.contains("log of run 7 on b"))
    }
}
