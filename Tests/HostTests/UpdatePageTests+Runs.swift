import ClientStateStore
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import Testing
import UpdatePage

/// What the page shows of runs it did not (or could not) start, and what it makes of a progress file it
/// cannot trust: the page only reads that file, the run writes it.
extension UpdatePageTests {
    @Test func aStartCommandThatFailsIsShownWithWhatItSaid() async throws {
        let page = try await PageFixture.start {
            $0.startCommand = ["/bin/sh", "-c", "echo 'Interactive authentication required.' >&2; exit 4"]
        }
        defer { page.stop() }
        let pressed = try await page.http.press()
        #expect(pressed.status == 500)
        let message = try #require(try pressed.json()["message"] as? String)
        #expect(message.contains("the run could not be started"), "\(message)")
        #expect(message.contains("exited with status 4: Interactive authentication required."), "\(message)")
        let run = try #require(try await page.http.get("/run").json()["run"] as? [String: Any])
        #expect(run["phase"] as? String == "finished" && run["outcome"] as? String == "error", "\(run)")
        #expect(page.runProcesses().isEmpty)
        let shown = try await page.http.get("/")
        #expect(shown.body.contains("data-outcome=\"error\"") && shown.body.contains("Interactive authentication"))
    }

    @Test func aPressWhoseRunNeverShowsUpSaysSoAfterTheStartTimeout() async throws {
        let page = try await PageFixture.start {
            $0.startCommand = ["/bin/true"]
            $0.startTimeout = .seconds(2)
        }
        defer { page.stop() }
        let pressed = try await page.http.press()
        #expect(pressed.status == 202)
        let waiting = try #require(try pressed.json()["run"] as? [String: Any])
        #expect(waiting["phase"] as? String == "running" && waiting["id"] as? Int == 1, "\(waiting)")
        #expect((waiting["summary"] as? String)?.hasPrefix("waiting for the run to start (/bin/true)") == true)
        let run = try await page.waitForFinishedRun(timeout: .seconds(10))
        #expect(run["outcome"] as? String == "error", "\(run)")
        #expect((run["summary"] as? String)?.contains("no run started within 2 s of starting it") == true, "\(run)")
    }

    @Test func aRunWhoseProcessIsGoneIsShownAsStoppedAndTheButtonWorksAgain() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        let gone = try SpawnedProcess(["/bin/true"], logPath: page.directory.path("true.log"))
        _ = await gone.waitForExit(timeout: .seconds(10))
        try FileIO.createDirectories(page.stateDirectory)
        try RunProgress(
            id: 4, phase: .running, startedAt: "2026-12-04T10:00:00Z", pid: gone.pid, lines: ["building …"]
        ).save(stateDirectory: page.stateDirectory)
        let run = try #require(try await page.http.get("/run").json()["run"] as? [String: Any])
        #expect(run["phase"] as? String == "finished" && run["outcome"] as? String == "error", "\(run)")
        #expect((run["summary"] as? String)?.contains("stopped without finishing") == true, "\(run)")
        #expect(!(try await page.http.get("/").body.contains("disabled>")), "the button is enabled")
        #expect(try await page.http.press().status == 202)
        let next = try await page.waitForFinishedRun()
        #expect(next["id"] as? Int == 5 && next["outcome"] as? String == "unreachable", "\(next)")
    }

    @Test func aHostileProgressFileCannotBreakOrInjectIntoThePage() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        try FileIO.createDirectories(page.stateDirectory)
        let path = page.stateDirectory + "/" + RunProgress.fileName

        // Markup and terminal escapes in the lines: shown as text, without the escapes.
        try RunProgress(
            id: 2, phase: .finished, startedAt: "x", lines: ["<script>alert(1)</script>", "\u{1b}[2Jcleared\u{7}"],
            outcome: "applied\"><script>alert(2)</script>", summary: "<img src=x onerror=alert(3)>"
        ).save(stateDirectory: page.stateDirectory)
        let shown = try await page.http.get("/")
        #expect(shown.status == 200)
        #expect(!shown.body.contains("<script>alert") && !shown.body.contains("<img src=x"), "\(shown.body)")
        #expect(shown.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        let lines = try #require(try await page.http.get("/run").json()["run"] as? [String: Any])["lines"]
        #expect(lines as? [String] == ["<script>alert(1)</script>", "[2Jcleared"], "\(lines ?? "none")")

        // Not JSON, too large, or a link elsewhere: no run shown, the page still answers and presses work.
        let hostile: [(String, () throws -> Void)] = [
            ("garbage", { try FileIO.writeAtomically(Array("{ not json".utf8), to: path) }),
            ("2 MiB", { try FileIO.writeAtomically([UInt8](repeating: 0x20, count: 2 << 20), to: path) }),
            (
                "a symbolic link",
                {
                    _ = try FileIO.removeFile(path)
                    try FileIO.replaceSymlink(path, pointingTo: "/etc/shadow")
                }
            ),
        ]
        for (what, write) in hostile {
            try write()
            let status = try await page.http.get("/run")
            #expect(status.status == 200, "\(what)")
            #expect(try status.json()["run"] == nil, "\(what): no run shown")
            #expect(try await page.http.get("/").status == 200, "\(what)")
        }
        #expect(try FileStatus.of(path)?.kind == .symbolicLink, "the page never writes the file")
    }
}

/// The page as the units run it: an unprivileged user that can read the state and progress files and run its
/// start command, and nothing else.
extension UpdatePageTests {
    @Test func thePageServesAndStartsRunsAsAnUnprivilegedUser() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        _ = chmod(page.directory.path, 0o755)
        // What a root run leaves: the state directory 0755, state.json and progress.json 0644, the rest private.
        try FileIO.createDirectories(page.stateDirectory, mode: 0o755)
        var state = ClientState()
        state.lastResult = .applied
        state.lastRunAt = "2026-12-04T10:00:00Z"
        try state.save(stateDirectory: page.stateDirectory)
        try RunProgress(
            id: 7, phase: .finished, startedAt: "2026-12-04T09:59:00Z", lines: ["connecting to …"], outcome: "applied",
            exitStatus: 10, summary: "applied: generation 3"
        ).save(stateDirectory: page.stateDirectory)
        // The start command runs as the page's user: it can only leave a mark where that user may write.
        try page.directory.makeDirectory("marks", mode: 0o777)
        let mark = page.directory.path("marks/pressed")
        try page.directory.writeFile("start.sh", text: "#!/bin/sh\nid -u > \(mark)\n", mode: 0o755)

        let served = try await ServedPage.start(
            config: page.configPath, logPath: page.directory.path("unprivileged.log"), directory: page.directory,
            runAs: 65534, extraArguments: ["--start-command", page.directory.path("start.sh")])
        defer { served.stop() }
        let shown = try await served.http.get("/")
        #expect(shown.status == 200)
        #expect(shown.body.contains("applied at 2026-12-04T10:00:00Z"), "state.json was read: \(shown.body)")
        #expect(shown.body.contains("applied: generation 3"), "progress.json was read")
        #expect(!shown.body.contains("cannot read"), "\(shown.body)")
        let pressed = try await served.http.press()
        #expect(pressed.status == 202, "\(pressed.body)")
        #expect(
            try String(contentsOfFile: mark, encoding: .utf8) == "65534\n", "the start command ran as the page's user")
        let uid = String(decoding: try FileIO.read("/proc/\(served.process.pid)/status"), as: UTF8.self)
            .split(separator: "\n").first { $0.hasPrefix("Uid:") }
        #expect(uid?.split(separator: "\t").dropFirst().allSatisfy { $0 == "65534" } == true, "\(uid ?? "")")
    }
}
