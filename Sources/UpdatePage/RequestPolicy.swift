/// Which requests the page answers: its own Host, its own Origin, three routes.
///
/// The page listens on loopback, but any web page the user visits can make the browser send requests to
/// 127.0.0.1. Two rules keep those out:
/// - **Host** must be exactly `127.0.0.1:<port>` or `localhost:<port>`. A site that rebinds its DNS name to
///   127.0.0.1 (DNS rebinding) sends its own name as Host and is refused, so it can neither read the page
///   nor press the button as "same origin".
/// - **Origin** (when sent, and always for a press) must be this page's own, `http://` + the Host. A press
///   without Origin needs a Referer from this page instead; with neither, it is refused. A cross-site form
///   or fetch POST carries the other site's Origin (or `null`) and is refused.
public struct RequestPolicy: Sendable {
    /// The policy's answer: a route, or a refusal.
    public enum Verdict: Sendable, Equatable {
        case route(Route)
        case refused(Refusal)
    }

    /// What an accepted request asks for.
    public enum Route: Sendable, Equatable {
        /// `GET /`: the page.
        case page
        /// `GET /run`: the latest run and the host's state, as JSON.
        case status
        /// `POST /run`: the button.
        case press
    }

    /// A refused request: the status and the message the client sees (an answer, not an error of the page).
    public struct Refusal: Sendable, Equatable {
        public var status: Int
        public var message: String
        /// The `Allow` header of a 405.
        public var allow: String?
    }

    /// Longer request targets are refused (the page's are `/` and `/run`).
    static let targetLimit = 256

    public let port: Int

    public init(port: Int) {
        self.port = port
    }

    /// The Host values the page answers to.
    public var hosts: [String] { ["127.0.0.1:\(port)", "localhost:\(port)"] }

    /// Checks a request's Host and Origin (and for a press its Origin or Referer), then routes it.
    ///
    /// - Parameter headers: every header as received, repeated names included.
    public func route(
        method: String, target: String, headers: [(name: String, value: String)]
    ) -> Verdict {
        func values(_ name: String) -> [String] {
            headers.filter { $0.name.lowercased() == name }.map { $0.value.trimmingSpaces() }
        }
        let hostValues = values("host")
        guard hostValues.count == 1, let host = hostValues.first else {
            return .refused(
                Refusal(
                    status: 400,
                    message: hostValues.isEmpty
                        ? "A Host header is required." : "Exactly one Host header is allowed."))
        }
        let ownHost = host.lowercased()
        guard hosts.contains(ownHost) else {
            return .refused(
                Refusal(
                    status: 403,
                    message: """
                        This page answers only to http://127.0.0.1:\(port)/ and http://localhost:\(port)/; \
                        Host "\(Self.quoted(host))" is refused (DNS rebinding protection).
                        """))
        }
        let ownOrigin = "http://" + ownHost
        let origins = values("origin")
        guard origins.count <= 1 else {
            return .refused(Refusal(status: 400, message: "Exactly one Origin header is allowed."))
        }
        if let origin = origins.first, origin.lowercased() != ownOrigin {
            return .refused(
                Refusal(
                    status: 403,
                    message: """
                        Cross-origin request refused: Origin "\(Self.quoted(origin))" is not this page (\(ownOrigin)).
                        """))
        }

        guard target.utf8.count <= Self.targetLimit else {
            return .refused(
                Refusal(status: 414, message: "The request target is longer than \(Self.targetLimit) bytes."))
        }
        let allowed: String
        switch target {
        case "/":
            allowed = "GET, HEAD"
            if method == "GET" || method == "HEAD" { return .route(.page) }
        case "/run":
            allowed = "GET, HEAD, POST"
            if method == "GET" || method == "HEAD" { return .route(.status) }
            if method == "POST" { return pressFrom(origin: origins.first, referers: values("referer"), ownOrigin) }
        default:
            return .refused(Refusal(status: 404, message: "Not found: the page has / and /run only."))
        }
        return .refused(
            Refusal(
                status: 405, message: "Method \(Self.quoted(method)) is not allowed on \(target) (\(allowed)).",
                allow: allowed))
    }

    /// A press must show it comes from the page: its Origin (already checked) or, without one, its Referer.
    private func pressFrom(origin: String?, referers: [String], _ ownOrigin: String) -> Verdict {
        if origin != nil { return .route(.press) }
        guard referers.count == 1, let referer = referers.first else {
            return .refused(
                Refusal(
                    status: 403,
                    message: """
                        A press must come from this page: the request has no Origin (or Referer) header, so it is refused.
                        """))
        }
        let lowered = referer.lowercased()
        guard lowered == ownOrigin || lowered.hasPrefix(ownOrigin + "/") else {
            return .refused(
                Refusal(
                    status: 403,
                    message: """
                        Cross-origin press refused: Referer "\(Self.quoted(referer))" is not this page (\(ownOrigin)/).
                        """))
        }
        return .route(.press)
    }

    /// A client's value as a refusal quotes it: printable ASCII but for quotes and markup, at most 100
    /// characters (refusals are plain text, but nothing a client sends is echoed as it came).
    static func quoted(_ value: String) -> String {
        let printable = value.unicodeScalars.prefix(100).map { scalar -> Character in
            scalar.value >= 0x20 && scalar.value < 0x7f && !"\"<>&'`".unicodeScalars.contains(scalar)
                ? Character(scalar) : "?"
        }
        return String(printable) + (value.unicodeScalars.count > 100 ? "…" : "")
    }
}

extension String {
    /// Without leading and trailing spaces and tabs (the optional whitespace around a header value).
    func trimmingSpaces() -> String {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return String(text)
    }
}
