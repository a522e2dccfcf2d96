import FleetTestSupport
import Foundation

/// A real headless Chromium driven through chromedriver's W3C WebDriver HTTP protocol: chromedriver on a
/// free loopback port in its own process group (``SpawnedProcess``), one session, a few commands.
final class WebDriver: Sendable {
    static let chromedriver = "/usr/bin/chromedriver"
    static let chromium = "/usr/lib/chromium/chromium"
    static let elementKey = "element-6066-11e4-a52e-4f735466cecf"

    let process: SpawnedProcess
    let port: Int
    let session: String
    private let profile: TestDirectory

    private init(process: SpawnedProcess, port: Int, session: String, profile: TestDirectory) {
        self.process = process
        self.port = port
        self.session = session
        self.profile = profile
    }

    /// Starts chromedriver and a headless Chromium session (as root: no sandbox; a fresh profile).
    static func start(logPath: String) async throws -> WebDriver {
        let profile = try TestDirectory.makeTemporary()
        let port = try LoopbackPort.free()
        let process = try SpawnedProcess(
            [chromedriver, "--port=\(port)", "--allowed-ips=127.0.0.1"], logPath: logPath)
        do {
            let deadline = ContinuousClock.now + .seconds(30)
            while !LoopbackPort.isAccepting(port) {
                if let status = process.exited() {
                    throw TestSupportError("chromedriver exited (\(status)): \(process.log())")
                }
                guard ContinuousClock.now < deadline else {
                    throw TestSupportError("chromedriver did not listen: \(process.log())")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            let capabilities: [String: Any] = [
                "capabilities": [
                    "alwaysMatch": [
                        "browserName": "chrome",
                        "goog:chromeOptions": [
                            "binary": chromium,
                            "args": [
                                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                "--no-first-run", "--window-size=1000,820",
                                "--user-data-dir=\(profile.path("profile"))",
                            ],
                        ],
                    ]
                ]
            ]
            let value = try await command(port: port, "POST", "/session", capabilities, timeout: .seconds(90))
            guard let session = (value as? [String: Any])?["sessionId"] as? String else {
                throw TestSupportError("no session: \(String(describing: value))")
            }
            return WebDriver(process: process, port: port, session: session, profile: profile)
        } catch {
            process.stop()
            profile.remove()
            throw error
        }
    }

    /// Ends the session, then chromedriver and every Chromium process (by group and PID).
    func stop() async {
        _ = try? await Self.command(port: port, "DELETE", "/session/\(session)", nil, timeout: .seconds(10))
        process.stop()
        profile.remove()
    }

    func navigate(to url: String) async throws {
        _ = try await run("POST", "url", ["url": url])
    }

    /// The element the CSS selector finds first.
    func element(_ selector: String) async throws -> String {
        let value = try await run("POST", "element", ["using": "css selector", "value": selector])
        guard let id = (value as? [String: Any])?[Self.elementKey] as? String else {
            throw TestSupportError("no element \(selector): \(String(describing: value))")
        }
        return id
    }

    func click(_ selector: String) async throws {
        _ = try await run("POST", "element/\(try await element(selector))/click", [:])
    }

    func text(_ selector: String) async throws -> String {
        (try await run("GET", "element/\(try await element(selector))/text", nil) as? String) ?? ""
    }

    /// Runs `script` in the page (a function body: `return …`).
    func execute(_ script: String) async throws -> Any? {
        try await run("POST", "execute/sync", ["script": script, "args": []])
    }

    /// Runs `script`, which calls `done(value)` (the last argument) when its asynchronous work ends.
    func executeAsync(_ script: String) async throws -> Any? {
        try await run(
            "POST", "execute/async", ["script": "const done = arguments[arguments.length - 1];\n" + script, "args": []])
    }

    /// A PNG of the viewport.
    func screenshot() async throws -> Data {
        guard let base64 = try await run("GET", "screenshot", nil) as? String, let png = Data(base64Encoded: base64)
        else {
            throw TestSupportError("no screenshot")
        }
        return png
    }

    /// Polls `condition` every 200 ms until it holds or `timeout` passes.
    func wait(
        _ what: String, timeout: Duration, _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestSupportError("timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    private func run(_ method: String, _ path: String, _ body: [String: Any]?) async throws -> Any? {
        try await Self.command(port: port, method, "/session/\(session)/\(path)", body, timeout: .seconds(60))
    }

    /// One WebDriver command: JSON in, the response's `value` out; a WebDriver error is thrown.
    private static func command(
        port: Int, _ method: String, _ path: String, _ body: [String: Any]?, timeout: Duration
    ) async throws -> Any? {
        let payload = try body.map { try JSONSerialization.data(withJSONObject: $0) } ?? Data()
        var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        if body != nil { request += "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\n" }
        let bytes = Array((request + "\r\n").utf8) + Array(payload)
        let response = try await RawHTTP(port: port).exchange(bytes, timeout: timeout)
        let object = try JSONSerialization.jsonObject(with: Data(response.body.utf8), options: [.fragmentsAllowed])
        let value = (object as? [String: Any])?["value"]
        if response.status >= 400 || (value as? [String: Any])?["error"] != nil {
            throw TestSupportError("WebDriver \(method) \(path): \(response.status) \(response.body.prefix(2000))")
        }
        return value is NSNull ? nil : value
    }
}
