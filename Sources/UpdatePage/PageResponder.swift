import ClientStateStore

/// Answers one request: the ``RequestPolicy`` decides whether and which route, then the page, the latest
/// run as JSON, or a press of the button.
struct PageResponder: Sendable {
    /// `GET /run` and the answer to a press: what the page needs to redraw itself.
    struct Document: Encodable, Sendable {
        var status: PageStatus
        var run: RunProgress?
        /// What the press did, in a sentence.
        var message: String?
        /// Seconds until a press may start a run (0: now).
        var nextRunInSeconds: Int
    }

    let policy: RequestPolicy
    let runs: RunStarter
    let host: String
    let stateDirectory: String

    func respond(method: String, target: String, headers: [(name: String, value: String)]) async -> PageResponse {
        switch policy.route(method: method, target: target, headers: headers) {
        case .refused(let refusal):
            return .text(refusal.status, refusal.message, headers: refusal.allow.map { [("Allow", $0)] } ?? [])
        case .route(.page):
            let nonce = PageHTML.makeNonce()
            let status = PageStatus(host: host, stateDirectory: stateDirectory)
            return .html(PageHTML.render(status: status, run: runs.current, nonce: nonce), nonce: nonce)
        case .route(.status):
            return .json(200, document(message: nil))
        case .route(.press):
            let wantsJSON = headers.contains {
                $0.name.lowercased() == "accept" && $0.value.contains("application/json")
            }
            return await press(wantsJSON: wantsJSON)
        }
    }

    private func press(wantsJSON: Bool) async -> PageResponse {
        let status: Int
        let message: String
        switch await runs.press() {
        case .started(let run):
            status = 202
            message = "Run \(run.id) requested (\(runs.startCommandLine))."
        case .couldNotStart(let run):
            status = 500
            message = run.summary ?? "The run could not be started."
        case .alreadyRunning(let run):
            status = 200
            message =
                "A run is already going (run \(run.id), started at \(run.startedAt)); here is its progress. "
                + "No second run was started."
        case .tooSoon(let startedAgo, let wait):
            let seconds = Self.wholeSeconds(wait)
            return .text(
                429,
                "Too many presses: the last run started \(Self.wholeSeconds(startedAgo, roundingUp: false)) s ago, "
                    + "and runs start at most once every \(Self.wholeSeconds(runs.minimumInterval)) s. "
                    + "Try again in \(seconds) s.",
                headers: [("Retry-After", "\(seconds)")])
        }
        guard wantsJSON else {
            // A form post without JavaScript: back to the page, which shows the run.
            return PageResponse(
                status: 303, contentType: "text/plain; charset=utf-8", body: Array((message + "\n").utf8),
                headers: [("Location", "/")])
        }
        return .json(status, document(message: message))
    }

    private func document(message: String?) -> Document {
        Document(
            status: PageStatus(host: host, stateDirectory: stateDirectory), run: runs.current,
            message: message, nextRunInSeconds: Self.wholeSeconds(runs.waitBeforeNextRun))
    }

    static func wholeSeconds(_ duration: Duration, roundingUp: Bool = true) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(seconds) + (roundingUp && attoseconds > 0 ? 1 : 0)
    }
}
