import ClientStateStore
import Foundation

/// The page itself: one HTML document with its style and script inline (nothing from another origin, no
/// CDN), rendered with the current state so that it shows it even without JavaScript. The script presses
/// the button with `fetch` and polls `GET /run` to show the run's progress and outcome without reloading.
enum PageHTML {
    static func render(status: PageStatus, run: RunProgress?, nonce: String) -> String {
        let running = run?.phase == .running
        let outcomeClass: String
        let outcomeText: String
        switch run {
        case .none:
            outcomeClass = ""
            outcomeText = ""
        case .some(let run) where run.phase == .running:
            outcomeClass = "running"
            outcomeText = "Updating… (started at \(run.startedAt))"
        case .some(let run):
            outcomeClass = run.outcome == "applied" || run.outcome == "unchanged" ? "good" : "bad"
            outcomeText = run.summary ?? run.outcome ?? ""
        }
        let lines = run?.lines.joined(separator: "\n") ?? ""
        // Without JavaScript, the page reloads itself while a run goes on.
        let refresh = running ? "\n<noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>" : ""
        // What a test or a script reads off the page: "running", or the outcome once the run ended.
        let outcomeName = run.map { $0.phase == .running ? "running" : $0.outcome ?? "" } ?? ""
        return """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>fleet · \(escape(status.host))</title>
            <link rel="icon" href="data:,">\(refresh)
            <style nonce="\(nonce)">\(style)</style>
            </head>
            <body>
            <main>
            <h1>fleet · <span id="host">\(escape(status.host))</span></h1>
            <dl>
            <dt>Applied</dt><dd id="applied">\(escape(status.applied))</dd>
            <dt>Last result</dt><dd id="last-result">\(escape(status.lastResultText))</dd>
            <dt>Last check</dt><dd id="last-check">\(escape(status.lastCheck))</dd>
            </dl>
            <p id="problem" class="bad"\(status.problem == nil ? " hidden" : "")>\(escape(status.problem ?? ""))</p>
            <form id="press" method="post" action="/run">
            <button id="update" type="submit"\(running ? " disabled" : "")>UPDATE MY MACHINE</button>
            </form>
            <p id="message" role="status"></p>
            <p id="outcome" class="\(outcomeClass)" data-outcome="\(escape(outcomeName))">\(escape(outcomeText))</p>
            <pre id="progress"\(run == nil ? " hidden" : "")>\(escape(lines))</pre>
            </main>
            <script nonce="\(nonce)">\(script)</script>
            </body>
            </html>

            """
    }

    /// A fresh nonce per response for the content security policy: only this page's own inline style and
    /// script run, never markup that slipped into it.
    static func makeNonce() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Data(bytes).base64EncodedString()
    }

    /// Text for HTML content and attribute values.
    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }

    static let style = """
        body { font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f3f4f6; color: #1c2230; }
        main { max-width: 46rem; margin: 3rem auto; padding: 0 1rem; }
        h1 { font-size: 1.4rem; margin: 0 0 1rem; }
        dl { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1.25rem; margin: 0;
             background: #fff; padding: 1rem 1.25rem; border-radius: 8px; box-shadow: 0 1px 3px #0002; }
        dt { color: #5b6372; }
        dd { margin: 0; overflow-wrap: anywhere; }
        button { font: inherit; font-size: 1.3rem; font-weight: 700; letter-spacing: .04em; margin: 1.5rem 0 .5rem;
                 padding: .9rem 2.2rem; border: 0; border-radius: 8px; background: #1f56d6; color: #fff;
                 cursor: pointer; }
        button:hover { background: #1846b2; }
        button:disabled { background: #8c9cc6; cursor: progress; }
        #outcome { font-weight: 700; }
        .good { color: #176c36; }
        .bad { color: #b1261c; }
        .running { color: #1f56d6; }
        pre { background: #111722; color: #d6dce7; padding: 1rem; border-radius: 8px; min-height: 2rem;
              white-space: pre-wrap; overflow-wrap: anywhere; }
        """

    static let script = """
        "use strict";
        const byId = (id) => document.getElementById(id);
        let timer;
        function render(doc) {
          const status = doc.status;
          byId("applied").textContent = status.applied;
          byId("last-result").textContent = status.lastResultText;
          byId("last-check").textContent = status.lastCheck;
          byId("problem").hidden = !status.problem;
          byId("problem").textContent = status.problem || "";
          const run = doc.run;
          const running = !!run && run.phase === "running";
          byId("update").disabled = running;
          if (run) {
            const outcome = byId("outcome");
            if (running) {
              outcome.textContent = "Updating… (started at " + run.startedAt + ")";
              outcome.className = "running";
              outcome.dataset.outcome = "running";
            } else {
              outcome.textContent = run.summary || run.outcome;
              outcome.className = run.outcome === "applied" || run.outcome === "unchanged" ? "good" : "bad";
              outcome.dataset.outcome = run.outcome;
            }
            const progress = byId("progress");
            progress.hidden = false;
            progress.textContent = run.lines.join("\\n");
          }
          return running;
        }
        async function refresh() {
          clearTimeout(timer);
          let running = false;
          try {
            const response = await fetch("/run", { headers: { "Accept": "application/json" }, cache: "no-store" });
            if (response.ok) {
              running = render(await response.json());
            }
          } catch (error) {
            byId("message").textContent = "fleet-client serve does not answer: " + error.message;
          }
          timer = setTimeout(refresh, running ? 500 : 5000);
        }
        byId("press").addEventListener("submit", async (event) => {
          event.preventDefault();
          byId("update").disabled = true;
          byId("message").textContent = "";
          try {
            const response = await fetch("/run", { method: "POST", headers: { "Accept": "application/json" } });
            if ((response.headers.get("Content-Type") || "").startsWith("application/json")) {
              const doc = await response.json();
              byId("message").textContent = doc.message || "";
              render(doc);
            } else {
              byId("message").textContent = await response.text();
            }
          } catch (error) {
            byId("message").textContent = "The press did not reach fleet-client serve: " + error.message;
          }
          refresh();
        });
        refresh();
        """
}
