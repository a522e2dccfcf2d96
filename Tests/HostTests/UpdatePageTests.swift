import ClientStateStore
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import HostAgent
import Testing
import UpdatePage

/// `fleet-client serve`, the page on 127.0.0.1 with the "UPDATE MY MACHINE" button, over real HTTP: every
/// refusal (Host, Origin, method, path, sizes, slow and idle connections, too many presses), one run at a
/// time, a real run through the page against a real fleet server, and socket activation by systemd's tool.
///
/// Most tests serve the page in this process (``PageFixture``); presses start the real
/// `fleet-client run`. The end-to-end tests run the `fleet-client serve` executable itself.
@Suite("fleet-client serve: the page on 127.0.0.1", .serialized)
struct UpdatePageTests {
    // MARK: - The page

    @Test func thePageShowsTheHostItsStateAndTheButtonWithNothingFromElsewhere() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        try FileIO.createDirectories(page.stateDirectory)
        try page.directory.writeFile(
            "state/state.json",
            text: """
                {"applied":{"generation":7,"contentDigest":"d","sourceCommit":"abc1234","system":"/nix/store/x",\
                "operation":"switch","at":"2026-11-20T10:00:00Z"},"lastResult":"applied",\
                "lastReason":"generation 7 applied","lastRunAt":"2026-11-20T10:00:05Z",\
                "lastContactAt":"2026-11-20T10:00:01Z"}

                """)

        let response = try await page.http.get("/")
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/html; charset=utf-8")
        for text in [
            "<span id=\"host\">alpha</span>", "generation 7 (commit abc1234, switch) at 2026-11-20T10:00:00Z",
            "applied at 2026-11-20T10:00:05Z: generation 7 applied", "server reached at 2026-11-20T10:00:01Z",
            ">UPDATE MY MACHINE</button>", "<style nonce=", "<script nonce=",
        ] {
            #expect(response.body.contains(text), "\(text)")
        }
        // Nothing is loaded from anywhere else, and the policy says so to the browser.
        for reference in ["http://", "https://", "src=", "@import", "url("] {
            #expect(!response.body.contains(reference), "\(reference)")
        }
        let policy = try #require(response.header("Content-Security-Policy"))
        #expect(policy.hasPrefix("default-src 'none'") && policy.contains("frame-ancestors 'none'"))
        #expect(policy.contains("connect-src 'self'") && policy.contains("form-action 'self'"))
        #expect(response.header("X-Frame-Options") == "DENY" && response.header("Connection") == "close")
        #expect(response.header("Cache-Control") == "no-store")

        let status = try await page.http.get("/run").json()
        let state = try #require(status["status"] as? [String: Any])
        #expect(state["appliedGeneration"] as? Int == 7 && state["lastResult"] as? String == "applied")
        #expect(status["run"] == nil, "no run before the first press")

        // localhost:<port> is the page's own name too; HEAD answers without a body.
        #expect(try await page.http.get("/", host: "localhost:\(page.port)").status == 200)
        let head = try await page.http.request("HEAD", "/")
        #expect(head.status == 200 && head.body.isEmpty)
        #expect(head.header("Content-Length") == response.header("Content-Length"))
    }

    // MARK: - Refusals: Host and Origin

    /// The whole matrix of Hosts, Origins and Referers is RequestPolicyTests' (in memory); here the server is
    /// shown to apply the policy on every route, answer in plain text and start nothing.
    @Test func requestsForAnotherHostAreRefusedOnEveryRoute() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        let host = "<script>x</script>"
        for (method, target) in [("GET", "/"), ("GET", "/run"), ("HEAD", "/"), ("POST", "/run")] {
            let response = try await page.http.request(
                method, target, host: host, headers: [("Origin", "http://\(host)"), ("Accept", "application/json")])
            #expect(response.status == 403, "\(method) \(target) Host \(host)")
            if method != "HEAD" {
                #expect(response.body.contains("DNS rebinding protection"), "\(response.body)")
                #expect(response.header("Content-Type") == "text/plain; charset=utf-8")
                #expect(!response.body.contains("<script>"), "the Host is not echoed as sent: \(response.body)")
            }
        }
        let missing = try await page.http.get("/", host: nil)
        #expect(missing.status == 400 && missing.body.contains("A Host header is required"))
        let old = try await page.http.exchange("GET / HTTP/1.0\r\n\r\n")
        #expect(old.status == 400, "HTTP/1.0 without Host")

        #expect(page.server.runs.current == nil && page.runProcesses().isEmpty, "no run was started")
    }

    @Test func crossOriginRequestsAndPressesAreRefused() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        let press = try await page.http.press(origin: "http://evil.example")
        #expect(press.status == 403 && press.body.contains("Cross-origin request refused: Origin"), "\(press.body)")
        let read = try await page.http.get("/run", headers: [("Origin", "null")])
        #expect(read.status == 403 && read.header("Access-Control-Allow-Origin") == nil)
        // A CORS preflight gets no CORS answer.
        let preflight = try await page.http.request(
            "OPTIONS", "/run", headers: [("Origin", "http://evil.example"), ("Access-Control-Request-Method", "POST")])
        #expect(preflight.status == 403 && preflight.header("Access-Control-Allow-Origin") == nil)

        #expect(page.server.runs.current == nil && page.runProcesses().isEmpty, "no run was started")
    }

    @Test func aPressWithoutOriginIsRefusedUnlessItsRefererIsThePage() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        let bare = try await page.http.request("POST", "/run")
        #expect(bare.status == 403)
        #expect(bare.body.contains("A press must come from this page: the request has no Origin (or Referer) header"))
        #expect(page.server.runs.current == nil && page.runProcesses().isEmpty)

        // The page's own form post from a browser that sends only a Referer: accepted, back to the page.
        let form = try await page.http.request("POST", "/run", headers: [("Referer", "http://127.0.0.1:\(page.port)/")])
        #expect(form.status == 303 && form.header("Location") == "/")
        let run = try await page.waitForFinishedRun()
        #expect(run["id"] as? Int == 1 && run["outcome"] as? String == "unreachable")
    }

    // MARK: - Refusals: the listening address

    @Test func onlyTheLoopbackAddressMayBeListenedOn() async throws {
        for text in ["127.0.0.1:9999", "127.0.0.1:0", "localhost:8080"] {
            #expect(throws: Never.self) { try ListenAddress(parsing: text) }
        }
        let refused = [
            "0.0.0.0:9999", "192.168.1.10:9999", "10.0.0.1:9999", "[::1]:9999", "[::]:9999", "::1:9999",
            "127.0.0.2:9999", "example.org:9999", "127.0.0.1", "127.0.0.1:70000", "127.0.0.1:-1", ":9999",
            "127.0.0.1:9999 ", " 127.0.0.1:9999",
        ]
        for text in refused {
            #expect(throws: UpdatePageError.self, "\(text)") { try ListenAddress(parsing: text) }
        }
        #expect(try ListenAddress(parsing: "127.0.0.1:9999") == .standard)

        // The executable refuses before binding anything.
        let page = try await PageFixture.start()
        defer { page.stop() }
        for address in ["0.0.0.0", "192.168.1.10", "[::]"] {
            let port = try LoopbackPort.free()
            let serve = try SpawnedProcess(
                [
                    FleetFixture.executable("fleet-client"), "serve", "--config", page.configPath, "--listen",
                    "\(address):\(port)",
                ],
                logPath: page.directory.path("serve-\(port).log"))
            defer { serve.stop() }
            let status = await serve.waitForExit(timeout: .seconds(30))
            #expect(status == 64, "\(address): \(serve.log())")
            #expect(serve.log().contains("the page listens on the loopback address 127.0.0.1 only"), "\(serve.log())")
            #expect(!LoopbackPort.isAccepting(port))
        }
    }

    @Test func socketsFromSystemdAreTakenOnlyWhenTheyAreThisProcesssAndOne() throws {
        let pid = "\(getpid())"
        #expect(try ListeningSocket.fromSystemd(environment: [:]) == nil)
        // Variables inherited by a process systemd did not start are not its.
        #expect(try ListeningSocket.fromSystemd(environment: ["LISTEN_PID": "1", "LISTEN_FDS": "1"]) == nil)
        #expect(try ListeningSocket.fromSystemd(environment: ["LISTEN_PID": pid, "LISTEN_FDS": "0"]) == nil)
        #expect(throws: UpdatePageError.self) {
            try ListeningSocket.fromSystemd(environment: ["LISTEN_PID": pid, "LISTEN_FDS": "2"])
        }
        #expect(throws: UpdatePageError.self) {
            try ListeningSocket.fromSystemd(environment: ["LISTEN_PID": pid, "LISTEN_FDS": "many"])
        }
        #expect(throws: UpdatePageError.self) {
            try ListeningSocket.forServe(listen: "0.0.0.0:9999", environment: [:])
        }
    }

    // MARK: - Presses

    @Test func pressesStartingRunsTooOftenGet429() async throws {
        let page = try await PageFixture.start { $0.minimumRunInterval = .seconds(60) }
        defer { page.stop() }
        let first = try await page.http.press()
        #expect(first.status == 202)
        let started = try first.json()
        let command = page.startCommand.joined(separator: " ")
        #expect(started["message"] as? String == "Run 1 requested (\(command)).")
        // The run fails at once (no server): on a loaded machine it may have finished before the answer is made.
        let phase = (started["run"] as? [String: Any])?["phase"] as? String
        #expect(phase == "running" || phase == "finished", "\(started)")
        let run = try await page.waitForFinishedRun()
        #expect(run["outcome"] as? String == "unreachable" && run["exitStatus"] as? Int == 13)

        for _ in 0..<3 {
            let again = try await page.http.press()
            #expect(again.status == 429)
            #expect(again.body.contains("Too many presses: the last run started"), "\(again.body)")
            #expect(again.body.contains("runs start at most once every 60 s. Try again in"))
            let retry = try #require(again.header("Retry-After").flatMap(Int.init))
            #expect((1...60).contains(retry))
        }
        let status = try await page.http.get("/run").json()
        #expect((status["run"] as? [String: Any])?["id"] as? Int == 1, "no other run started")
        #expect((status["nextRunInSeconds"] as? Int ?? 0) > 0)
    }

    @Test func aSecondPressWhileARunIsGoingShowsItAndStartsNoOther() async throws {
        let silent = try SilentListener()
        defer { silent.close() }
        let page = try await PageFixture.start(serverPort: silent.port, connectTimeoutSeconds: 4)
        defer { page.stop() }
        let first = try await page.http.press()
        #expect(first.status == 202)

        var processes: [pid_t] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while processes.isEmpty && ContinuousClock.now < deadline {
            processes = page.runProcesses()
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(processes.count == 1, "one fleet-client run: \(processes)")
        for _ in 0..<3 {
            let again = try await page.http.press()
            #expect(again.status == 200)
            let document = try again.json()
            let run = try #require(document["run"] as? [String: Any])
            #expect(run["id"] as? Int == 1 && run["phase"] as? String == "running")
            #expect((document["message"] as? String)?.contains("A run is already going (run 1") == true)
            #expect((document["message"] as? String)?.contains("No second run was started.") == true)
        }
        // The page's form post without JavaScript: back to the page, which shows the same run.
        let form = try await page.http.request("POST", "/run", headers: [("Origin", "http://127.0.0.1:\(page.port)")])
        #expect(form.status == 303)
        let shown = try await page.http.get("/")
        #expect(shown.body.contains("data-outcome=\"running\""))
        #expect(shown.body.contains("<button id=\"update\" type=\"submit\" disabled>"))
        #expect(shown.body.contains("<noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>"))
        #expect(page.runProcesses() == processes, "still the one process")

        let run = try await page.waitForFinishedRun()
        #expect(run["id"] as? Int == 1 && run["outcome"] as? String == "unreachable")
        let lines = run["lines"] as? [String] ?? []
        #expect(lines.first == "connecting to fleet-alpha@127.0.0.1:\(silent.port)", "\(lines)")
        #expect(page.runProcesses().isEmpty)
    }

    @Test func aRunStartedElsewhereIsShownAndAPressStartsNoOther() async throws {
        let silent = try SilentListener()
        defer { silent.close() }
        let page = try await PageFixture.start(serverPort: silent.port, connectTimeoutSeconds: 4)
        defer { page.stop() }
        // The timer's run (or a sysadmin's at a terminal), not the page's.
        let timerRun = try SpawnedProcess(
            [FleetFixture.executable("fleet-client"), "run", "--config", page.configPath],
            logPath: page.directory.path("timer-run.log"))
        defer { timerRun.stop() }
        let deadline = ContinuousClock.now + .seconds(10)
        while (try? RunProgress.load(stateDirectory: page.stateDirectory))??.phase != .running {
            guard ContinuousClock.now < deadline else { throw TestSupportError("the run wrote no progress") }
            try await Task.sleep(for: .milliseconds(20))
        }
        let pressed = try await page.http.press()
        #expect(pressed.status == 200)
        let document = try pressed.json()
        #expect((document["message"] as? String)?.contains("A run is already going (run 1") == true, "\(document)")
        #expect(page.runProcesses() == [timerRun.pid], "no second run was started")
        let run = try await page.waitForFinishedRun()
        #expect(run["id"] as? Int == 1 && run["outcome"] as? String == "unreachable", "\(run)")
        #expect(run["exitStatus"] as? Int == Int(RunOutcome.unreachable.exitStatus))
        #expect(await timerRun.waitForExit(timeout: .seconds(30)) == RunOutcome.unreachable.exitStatus)
        #expect(try await page.http.get("/").body.contains("data-outcome=\"unreachable\""))
    }

    // MARK: - Hostile requests

    /// Which methods and paths the policy answers is RequestPolicyTests' (in memory); here the server's 405
    /// carries its Allow header, and what HTTP itself cannot parse is a 400.
    @Test func unknownMethodsAndPathsAreRefused() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        let response = try await page.http.request(
            "DELETE", "/run", headers: [("Origin", "http://127.0.0.1:\(page.port)")])
        #expect(response.status == 405 && response.header("Allow") == "GET, HEAD, POST")
        #expect(try await page.http.get("/../run").status == 404)
        let brew = try await page.http.request("BREW", "/run")
        #expect([400, 405].contains(brew.status), "an unknown method: \(brew.status)")
        let long = try await page.http.get("/" + String(repeating: "a", count: 300))
        #expect(long.status == 414)
        for garbage in [
            "HELLO\r\n\r\n", "GET / HTTP/1.1\r\nHost: 127.0.0.1:\(page.port)\r\nno colon here\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:\(page.port)\r\nContent-Length: ten\r\n\r\n",
            "POST /run HTTP/1.1\r\nHost: 127.0.0.1:\(page.port)\r\nContent-Length: 3\r\n"
                + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:\(page.port)\r\nX: a\0b\r\n\r\n",
            "\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}\u{00}\u{01}\u{fc}\u{03}\u{03}\r\n\r\n",
        ] {
            let response = try await page.http.exchange(garbage)
            #expect(response.status == 400, "\(garbage.debugDescription): \(response.status) \(response.body)")
        }
        #expect(page.server.runs.current == nil && page.runProcesses().isEmpty)
    }

    @Test func oversizedHeadersGet431() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        let cases: [(String, [(String, String)])] = [
            ("one 9 KiB header", [("X-Big", String(repeating: "b", count: 9 * 1024))]),
            ("150 headers", (0..<150).map { ("X-H\($0)", "v") }),
            ("20 KiB of headers", (0..<20).map { ("X-H\($0)", String(repeating: "c", count: 1000)) }),
            ("a 16 KiB cookie", [("Cookie", "session=" + String(repeating: "d", count: 16 * 1024))]),
        ]
        for (what, headers) in cases {
            let response = try await page.http.press(headers: headers)
            #expect(response.status == 431, "\(what): \(response.status)")
            #expect(response.body.contains("Request headers too large"), "\(what)")
        }
        let url = try await page.http.get("/" + String(repeating: "u", count: 9 * 1024))
        #expect(url.status == 431, "a 9 KiB request target")
        // A browser's ordinary headers (a few KiB with cookies) are fine.
        let ordinary = try await page.http.get("/", headers: [("Cookie", String(repeating: "e", count: 4000))])
        #expect(ordinary.status == 200)
        #expect(page.server.runs.current == nil && page.runProcesses().isEmpty)
    }

    @Test func oversizedBodiesGet413() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        let origin = "Origin: http://127.0.0.1:\(page.port)\r\nHost: 127.0.0.1:\(page.port)\r\n"
        // Declared too large: refused before anything is read (no body is sent, so a server that waited for it
        // would answer 408 at the request deadline, not 413).
        let declared = try await page.http.exchange("POST /run HTTP/1.1\r\n\(origin)Content-Length: 10000000\r\n\r\n")
        #expect(declared.status == 413 && declared.body.contains("Request body too large"), "\(declared.body)")
        // Sent in chunks, more than the limit.
        let chunk = String(repeating: "x", count: 1000)
        var chunked = "POST /run HTTP/1.1\r\n\(origin)Transfer-Encoding: chunked\r\n\r\n"
        for _ in 0..<4 { chunked += "3e8\r\n\(chunk)\r\n" }
        chunked += "0\r\n\r\n"
        let streamed = try await page.http.exchange(chunked)
        #expect(streamed.status == 413)
        // Even a GET may not carry one.
        let get = try await page.http.request("GET", "/", body: String(repeating: "y", count: 2048))
        #expect(get.status == 413)
        // A small body is ignored (a press needs none).
        let small = try await page.http.request("GET", "/run", body: "hello")
        #expect(small.status == 200)
        #expect(page.server.runs.current == nil && page.runProcesses().isEmpty)
    }

    @Test func idleAndSlowConnectionsAreCutAtTheRequestDeadline() async throws {
        // Only here a 2 s deadline: elsewhere it would cut requests of a test process starved by the parallel
        // suite (the 408 is written, the close resets the unread request, and the client sees nothing).
        let page = try await PageFixture.start { $0.requestTimeout = .seconds(2) }
        defer { page.stop() }
        let port = page.port

        // Connected, silent.
        let idle = try await RawHTTP.offExecutor {
            let connection = try RawHTTP.Connection(port: port)
            let started = ContinuousClock.now
            let (closed, bytes) = connection.readUntilClosed(timeout: .seconds(10))
            return (closed, String(decoding: bytes, as: UTF8.self), ContinuousClock.now - started)
        }
        #expect(idle.0, "the server closed the idle connection")
        #expect(idle.1.hasPrefix("HTTP/1.1 408 Request Timeout") && idle.1.contains("within 2 s"), "\(idle.1)")
        #expect(idle.2 >= .milliseconds(1500) && idle.2 < .seconds(6), "\(idle.2)")

        // Slowloris: a header line every 200 ms, never the end of the headers.
        let slow = try await RawHTTP.offExecutor {
            let connection = try RawHTTP.Connection(port: port)
            let started = ContinuousClock.now
            connection.send("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n")
            var received: [UInt8] = []
            for index in 0..<50 {
                guard connection.send("X-Slow-\(index): a\r\n") else { break }
                let (closed, bytes) = connection.readUntilClosed(timeout: .milliseconds(200))
                received += bytes
                if closed { return (true, String(decoding: received, as: UTF8.self), ContinuousClock.now - started) }
            }
            return (false, String(decoding: received, as: UTF8.self), ContinuousClock.now - started)
        }
        #expect(slow.0, "the server cut the slow connection although bytes kept coming")
        #expect(slow.1.hasPrefix("HTTP/1.1 408"), "\(slow.1)")
        #expect(slow.2 < .seconds(6), "\(slow.2)")

        // A body that never finishes.
        let stalled = try await RawHTTP.offExecutor {
            let connection = try RawHTTP.Connection(port: port)
            connection.send(
                "POST /run HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nOrigin: http://127.0.0.1:\(port)\r\n"
                    + "Content-Length: 100\r\n\r\nab")
            let (closed, bytes) = connection.readUntilClosed(timeout: .seconds(10))
            return (closed, String(decoding: bytes, as: UTF8.self))
        }
        #expect(stalled.0 && stalled.1.hasPrefix("HTTP/1.1 408"), "\(stalled.1)")
        #expect(page.server.runs.current == nil && page.runProcesses().isEmpty)
        #expect(try await page.http.get("/").status == 200, "the page still answers")
    }

    @Test func connectionsBeyondTheCapGet503AndTheCapFreesUp() async throws {
        let page = try await PageFixture.start {
            $0.maximumConnections = 3
            // Long enough that the refusal below comes well before the held connections are cut, even on a
            // machine loaded by the parallel suite.
            $0.requestTimeout = .seconds(6)
        }
        defer { page.stop() }
        let port = page.port
        let held = try (0..<3).map { _ in try RawHTTP.Connection(port: port) }
        try await Task.sleep(for: .milliseconds(300))
        let refused = try await RawHTTP.offExecutor {
            let connection = try RawHTTP.Connection(port: port)
            let (closed, bytes) = connection.readUntilClosed(timeout: .seconds(4))
            return (closed, String(decoding: bytes, as: UTF8.self))
        }
        #expect(refused.0 && refused.1.hasPrefix("HTTP/1.1 503 Service Unavailable"), "\(refused.1)")
        #expect(refused.1.contains("Too many connections to the page (at most 3 at once)"))
        // The held connections are cut at the request deadline; then the page answers again.
        let cut = try await RawHTTP.offExecutor { held.map { $0.readUntilClosed(timeout: .seconds(20)).closed } }
        #expect(cut == [true, true, true])
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await page.http.get("/").status == 200)
    }

    // MARK: - The real thing

    @Test func aPressRunsTheClientAgainstTheFleetServerAndShowsProgressThenTheOutcome() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"]) { try Self.slowBuild("alpha", seconds: 2, in: $0) }
        defer { fleet.stop() }
        let page = try await ServedPage.start(
            config: fleet.configPath("alpha"), logPath: fleet.clients.path("serve.log"), directory: fleet.clients,
            environment: ["FLEET_ACTIVATION_LOG": fleet.activationLog("alpha")])
        defer { page.stop() }
        #expect(try await page.http.get("/").body.contains("nothing yet"))

        let pressed = try await page.http.press()
        #expect(pressed.status == 202, "\(pressed.body)")
        let (run, progress) = try await Self.follow(page.http)
        #expect(!progress.isEmpty, "progress lines were shown while the run was going")
        #expect(progress.first?.hasPrefix("connecting to \(fleet.prefix)alpha@127.0.0.1") == true, "\(progress)")
        #expect(progress.contains { $0.hasPrefix("building nixosConfigurations.alpha from ") }, "\(progress)")
        #expect(run["outcome"] as? String == "applied" && run["exitStatus"] as? Int == 10, "\(run)")
        let lines = run["lines"] as? [String] ?? []
        #expect(lines.contains { $0.hasPrefix("building nixosConfigurations.alpha from ") }, "\(lines)")
        #expect((run["summary"] as? String)?.hasPrefix("applied:") == true)
        #expect(!lines.contains { $0.hasPrefix("fleet-client[") }, "the prefix is stripped")
        #expect(try fleet.state("alpha").applied?.generation == 1)
        #expect(fleet.activations("alpha").count == 2)
        let shown = try await page.http.get("/")
        #expect(shown.body.contains("generation 1 (") && shown.body.contains("data-outcome=\"applied\""))

        // Nothing new published: the next press finds it unchanged.
        #expect(try await page.http.press().status == 202)
        let (second, _) = try await Self.follow(page.http)
        #expect(second["id"] as? Int == 2)
        #expect(second["outcome"] as? String == "unchanged" && second["exitStatus"] as? Int == 0, "\(second)")
        #expect(fleet.activations("alpha").count == 2)
        #expect(page.process.exited() == nil, "the page keeps serving")
    }

    @Test func socketActivationServesOnTheSocketSystemdPasses() async throws {
        let page = try await PageFixture.start()
        defer { page.stop() }
        let port = try LoopbackPort.free()
        let served = try await ServedPage.socketActivated(
            address: "127.0.0.1:\(port)", port: port, config: page.configPath,
            logPath: page.directory.path("activated.log"), directory: page.directory)
        defer { served.stop() }
        // The first connection waits in the socket's queue until fleet-client has started and serves it.
        let first = try await served.http.get("/")
        #expect(first.status == 200 && first.body.contains("<span id=\"host\">alpha</span>"))
        let log = try await served.process.waitForLog("socket from systemd")
        #expect(log.contains("serving http://127.0.0.1:\(port)/ (socket from systemd)"), "\(log)")
        #expect(ProcessTable.commandLine(of: served.process.pid)?.contains("fleet-client serve") == true)
        #expect((try? FileIO.readLink("/proc/\(served.process.pid)/fd/3"))?.hasPrefix("socket:") == true)
        // The Host check uses the port of the socket it was given.
        #expect(try await served.http.get("/", host: "evil.example:\(port)").status == 403)
        #expect(try await served.http.press().status == 202)

        // A socket on every address is refused, and the page does not serve.
        let open = try LoopbackPort.free()
        let everywhere = try await ServedPage.socketActivated(
            address: "0.0.0.0:\(open)", port: open, config: page.configPath,
            logPath: page.directory.path("everywhere.log"), directory: page.directory)
        defer { everywhere.stop() }
        _ = try? await everywhere.http.get("/", timeout: .seconds(10))
        #expect(await everywhere.process.waitForExit(timeout: .seconds(30)) == 1)
        #expect(
            everywhere.process.log().contains(
                "the socket systemd passed (fd 3) listens on 0.0.0.0:\(open); the page serves 127.0.0.1 only"),
            "\(everywhere.process.log())")

        // With a socket from systemd, --listen is a contradiction.
        let both = try LoopbackPort.free()
        let contradiction = try await ServedPage.socketActivated(
            address: "127.0.0.1:\(both)", port: both, config: page.configPath,
            logPath: page.directory.path("both.log"), directory: page.directory,
            extraArguments: ["--listen", "127.0.0.1:\(both)"])
        defer { contradiction.stop() }
        _ = try? await contradiction.http.get("/", timeout: .seconds(10))
        #expect(await contradiction.process.waitForExit(timeout: .seconds(30)) == 1)
        #expect(contradiction.process.log().contains("drop --listen"), "\(contradiction.process.log())")
    }

    /// Makes `host` a system whose build takes `seconds` (and is new to the Nix store, whatever ran before),
    /// so that a run has progress to show while it goes on. Its activation is logged as the toy's is.
    static func slowBuild(_ host: String, seconds: Int, in fixture: FleetFixture) throws {
        try fixture.write(
            "hosts/\(host)/flake.nix",
            """
            {
              outputs = { self }: {
                nixosConfigurations.\(host).config.system.build.toplevel = derivation {
                  name = "nixos-system-\(host)-slow";
                  system = "x86_64-linux";
                  builder = "/bin/sh";
                  nonce = "\(UUID().uuidString)";
                  args = [ "-c" ''
                    /bin/sleep \(seconds)
                    /bin/mkdir -p $out/bin
                    switch=$out/bin/switch-to-configuration
                    printf '#!/bin/sh\\necho "$1 \(host) '$out'" >> "$FLEET_ACTIVATION_LOG"\\n' > $switch
                    /bin/chmod +x $switch
                  '' ];
                };
              };
            }

            """)
    }

    /// Polls `GET /run` until the run ends; returns it and the lines seen while it was still running.
    static func follow(_ http: RawHTTP, timeout: Duration = .seconds(300)) async throws -> ([String: Any], [String]) {
        var progress: [String] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let run = try #require(try await http.get("/run").json()["run"] as? [String: Any])
            if run["phase"] as? String == "finished" { return (run, progress) }
            let lines = run["lines"] as? [String] ?? []
            if lines.count > progress.count { progress = lines }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSupportError("the run did not finish in time")
    }
}
