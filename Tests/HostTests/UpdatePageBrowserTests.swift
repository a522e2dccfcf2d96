import FleetFiles
import FleetTestSupport
import Foundation
import Testing

/// The page in a real browser: headless Chromium (Debian's `chromium`), driven through chromedriver's
/// WebDriver protocol, against `fleet-client serve` and a real fleet server. The screenshots are kept in
/// `.build/test-artifacts/`.
@Suite("The page in headless Chromium", .serialized)
struct UpdatePageBrowserTests {
    /// `<package>/.build/test-artifacts/`.
    static let artifacts: String = {
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        return package + "/.build/test-artifacts"
    }()

    @Test func pressingTheButtonRunsTheClientShowsItsOutcomeAndAnotherOriginCannotPress() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"]) {
            try UpdatePageTests.slowBuild("alpha", seconds: 3, in: $0)
        }
        defer { fleet.stop() }
        let page = try await ServedPage.start(
            config: fleet.configPath("alpha"), logPath: fleet.clients.path("serve.log"), directory: fleet.clients,
            environment: ["FLEET_ACTIVATION_LOG": fleet.activationLog("alpha")])
        defer { page.stop() }
        let browser = try await WebDriver.start(logPath: fleet.clients.path("chromedriver.log"))
        do {
            try await pressInTheBrowser(browser, page: page, fleet: fleet)
            try await refuseAnotherOrigin(browser, page: page)
        } catch {
            await browser.stop()
            throw error
        }
        await browser.stop()
        #expect(browser.process.exited() != nil)
        #expect(ProcessTable.members(ofGroup: browser.process.pid).isEmpty, "no Chromium process is left")
    }

    private func pressInTheBrowser(_ browser: WebDriver, page: ServedPage, fleet: ClientFleet) async throws {
        try await browser.navigate(to: "http://127.0.0.1:\(page.port)/")
        #expect(try await browser.text("#host") == "alpha")
        #expect(try await browser.text("#applied") == "nothing yet")
        #expect(try await browser.text("#update") == "UPDATE MY MACHINE")

        // Everything the page shows while the run goes on, as it changes.
        _ = try await browser.execute(
            """
            window.seenWhileRunning = [];
            new MutationObserver(() => {
              const outcome = document.getElementById("outcome").dataset.outcome;
              const progress = document.getElementById("progress").textContent;
              if (outcome === "running") {
                window.seenWhileRunning.push([progress, document.getElementById("update").disabled]);
              }
            }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
            """)
        try await browser.click("#update")
        var outcome = ""
        try await browser.wait("the run's outcome in the page", timeout: .seconds(300)) {
            outcome =
                try await browser.execute("return document.getElementById('outcome').dataset.outcome") as? String ?? ""
            return !outcome.isEmpty && outcome != "running"
        }
        let seen = (try await browser.execute("return window.seenWhileRunning") as? [[Any]] ?? [])
            .compactMap { $0.first as? String }
        #expect(
            seen.contains { $0.contains("building nixosConfigurations.alpha") && !$0.contains("applied:") },
            "the page showed the build going on before the outcome: \(seen)")
        let disabled = try await browser.execute("return window.seenWhileRunning.every((entry) => entry[1])") as? Bool
        #expect(disabled == true, "the button was disabled while the run went on")
        #expect(outcome == "applied")
        let outcomeText = try await browser.text("#outcome")
        #expect(outcomeText.hasPrefix("applied:"), "\(outcomeText)")
        let progress = try await browser.text("#progress")
        #expect(progress.contains("connecting to \(fleet.prefix)alpha@127.0.0.1"), "\(progress)")
        #expect(progress.contains("building nixosConfigurations.alpha"), "\(progress)")
        #expect(try await browser.text("#applied").hasPrefix("generation 1 ("))
        #expect(try await browser.execute("return document.getElementById('update').disabled") as? Bool == false)
        #expect(fleet.activations("alpha").count == 2)
        let message = try await browser.text("#message")
        #expect(message == "Run 1 requested (\(fleet.clients.path("start-run.sh"))).", "\(message)")

        let path = try Self.keep(try await browser.screenshot(), as: "update-page.png")
        print("screenshot of the page after the run: \(path)")
    }

    /// Another page on another loopback port tries both ways a site can press: `fetch` and a form post.
    private func refuseAnotherOrigin(_ browser: WebDriver, page: ServedPage) async throws {
        let target = "http://127.0.0.1:\(page.port)/run"
        let elsewhere = try StaticPage(
            html: """
                <!doctype html>
                <title>Somewhere else</title>
                <p id="fetch">fetch pending</p>
                <form method="post" action="\(target)"><button id="press" type="submit">Win a prize</button></form>
                <script>
                fetch("\(target)", { method: "POST" }).then(
                  (response) => { document.getElementById("fetch").textContent = "fetch answered " + response.status; },
                  (error) => { document.getElementById("fetch").textContent = "fetch refused: " + error.message; });
                </script>

                """)
        defer { elsewhere.stop() }
        try await browser.navigate(to: "http://127.0.0.1:\(elsewhere.port)/")
        var fetched = ""
        try await browser.wait("the fetch to settle", timeout: .seconds(30)) {
            fetched = try await browser.text("#fetch")
            return fetched != "fetch pending"
        }
        // The page sent no CORS header, so the browser does not even show the other site its status.
        #expect(fetched.hasPrefix("fetch refused:"), "\(fetched)")

        try await browser.click("#press")
        var shown = ""
        try await browser.wait("the answer to the form post", timeout: .seconds(30)) {
            let answer =
                try await browser.execute(
                    "return [location.href, document.body ? document.body.innerText : '']") as? [String] ?? []
            shown = answer.last ?? ""
            return answer.first == target
        }
        let refusal = "Cross-origin request refused: Origin \"http://127.0.0.1:\(elsewhere.port)\" is not this page"
        #expect(shown.contains(refusal), "\(shown)")
        let path = try Self.keep(try await browser.screenshot(), as: "update-page-cross-origin.png")
        print("screenshot of the refused cross-origin press: \(path)")

        // Neither started a run: the latest is still the one pressed on the page.
        let run = try await page.http.get("/run").json()["run"] as? [String: Any]
        #expect(run?["id"] as? Int == 1, "\(String(describing: run))")
    }

    /// Writes a screenshot to `.build/test-artifacts/<name>` and returns its path.
    static func keep(_ png: Data, as name: String) throws -> String {
        try FileIO.createDirectories(artifacts)
        let path = artifacts + "/" + name
        try png.write(to: URL(fileURLWithPath: path))
        #expect(png.starts(with: [0x89, 0x50, 0x4e, 0x47]), "a PNG")
        return path
    }
}
