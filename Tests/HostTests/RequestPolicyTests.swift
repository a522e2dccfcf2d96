import FleetTestSupport
import Testing

@testable import UpdatePage

/// The page's request policy, in memory: every Host, Origin, Referer, method and path decision the page makes,
/// without a socket (the live tests in UpdatePageTests keep one case of each to show the server applies it).
@Suite("The page's request policy")
struct RequestPolicyTests {
    let port = 9999
    var policy: RequestPolicy { RequestPolicy(port: port) }

    func route(
        _ method: String, _ target: String, host: String? = "127.0.0.1:9999", _ headers: [(String, String)] = []
    ) -> RequestPolicy.Verdict {
        var all: [(name: String, value: String)] = host.map { [("Host", $0)] } ?? []
        all += headers.map { (name: $0.0, value: $0.1) }
        return policy.route(method: method, target: target, headers: all)
    }

    func refusal(_ verdict: RequestPolicy.Verdict) -> RequestPolicy.Refusal? {
        if case .refused(let refusal) = verdict { return refusal }
        return nil
    }

    @Test func thePagesOwnRequestsAreRouted() {
        for host in ["127.0.0.1:9999", "localhost:9999", "LOCALHOST:9999"] {
            #expect(route("GET", "/", host: host) == .route(.page))
            #expect(route("HEAD", "/", host: host) == .route(.page))
            #expect(route("GET", "/run", host: host) == .route(.status))
            #expect(route("POST", "/run", host: host, [("Origin", "http://\(host.lowercased())")]) == .route(.press))
        }
        #expect(route("POST", "/run", [("Referer", "http://127.0.0.1:9999/")]) == .route(.press))
        #expect(route("POST", "/run", [("Referer", "http://127.0.0.1:9999")]) == .route(.press))
    }

    /// DNS rebinding: the attacker's name resolves to 127.0.0.1, so the browser sends it as Host (and, for a
    /// page of that name, as Origin: same origin in the browser's eyes).
    @Test func requestsForAnotherHostAreRefusedOnEveryRoute() throws {
        let foreign = [
            "evil.example:9999", "evil.example:\(port)", "127.0.0.1:\(port + 1)", "127.0.0.1", "localhost",
            "[::1]:\(port)", "0.0.0.0:\(port)", "127.0.0.1:\(port).evil.example", "<script>x</script>",
        ]
        for host in foreign {
            for (method, target) in [("GET", "/"), ("GET", "/run"), ("HEAD", "/"), ("POST", "/run")] {
                let refused = try #require(
                    refusal(route(method, target, host: host, [("Origin", "http://\(host)")])), "\(method) \(host)")
                #expect(refused.status == 403 && refused.message.contains("DNS rebinding protection"))
                #expect(!refused.message.contains("<script>"), "the Host is not echoed as sent: \(refused.message)")
            }
        }
        let missing = try #require(refusal(route("GET", "/", host: nil)))
        #expect(missing.status == 400 && missing.message.contains("A Host header is required"))
        let twice = try #require(refusal(route("GET", "/", [("Host", "evil.example")])))
        #expect(twice.status == 400 && twice.message.contains("Exactly one Host header"))
    }

    @Test func crossOriginRequestsAndPressesAreRefused() throws {
        let origins = [
            "http://evil.example", "null", "http://127.0.0.1:\(port + 1)", "https://127.0.0.1:\(port)",
            "http://localhost:\(port)", "http://127.0.0.1:\(port).evil.example", "http://127.0.0.1", "file://",
        ]
        for origin in origins {
            let press = try #require(refusal(route("POST", "/run", [("Origin", origin)])), "\(origin)")
            #expect(press.status == 403 && press.message.contains("Cross-origin request refused: Origin"))
            let read = try #require(refusal(route("GET", "/run", [("Origin", origin)])), "\(origin)")
            #expect(read.status == 403)
        }
        let referred = try #require(refusal(route("POST", "/run", [("Referer", "http://evil.example/page")])))
        #expect(referred.status == 403 && referred.message.contains("Cross-origin press refused: Referer"))
        let lookalike = try #require(
            refusal(route("POST", "/run", [("Referer", "http://127.0.0.1:\(port).evil.example/")])))
        #expect(lookalike.status == 403)
        let both = try #require(
            refusal(route("POST", "/run", [("Origin", "http://127.0.0.1:9999"), ("Origin", "http://evil.example")])))
        #expect(both.status == 400 && both.message.contains("Exactly one Origin"))
        let preflight = try #require(
            refusal(
                route(
                    "OPTIONS", "/run", [("Origin", "http://evil.example"), ("Access-Control-Request-Method", "POST")])))
        #expect(preflight.status == 403)
        let bare = try #require(refusal(route("POST", "/run")))
        #expect(bare.status == 403)
        #expect(
            bare.message.contains("A press must come from this page: the request has no Origin (or Referer) header"))
        let twoReferers = try #require(
            refusal(
                route("POST", "/run", [("Referer", "http://127.0.0.1:9999/"), ("Referer", "http://127.0.0.1:9999/")])))
        #expect(twoReferers.status == 403)
    }

    @Test func unknownMethodsAndPathsAreRefused() throws {
        let origin = [("Origin", "http://127.0.0.1:\(port)")]
        for (method, target, allow) in [
            ("DELETE", "/run", "GET, HEAD, POST"), ("PUT", "/run", "GET, HEAD, POST"), ("PATCH", "/", "GET, HEAD"),
            ("POST", "/", "GET, HEAD"), ("TRACE", "/", "GET, HEAD"), ("OPTIONS", "/", "GET, HEAD"),
            ("BREW", "/run", "GET, HEAD, POST"),
        ] {
            let refused = try #require(refusal(route(method, target, origin)), "\(method) \(target)")
            #expect(refused.status == 405 && refused.allow == allow, "\(method) \(target)")
        }
        for target in [
            "/etc/passwd", "/../run", "/run/", "/run?x=1", "//run", "/%72un", "/index.html", "/favicon.ico",
            "http://127.0.0.1:\(port)/", "*",
        ] {
            #expect(refusal(route("GET", target))?.status == 404, "\(target)")
        }
        #expect(refusal(route("GET", "/" + String(repeating: "a", count: 300)))?.status == 414)
    }

    @Test func whatAClientSentIsNeverEchoedAsItCame() {
        #expect(RequestPolicy.quoted("<script>\"x\"</script>") == "?script??x??/script?")
        #expect(RequestPolicy.quoted("a\u{1b}[2Jb\n") == "a?[2Jb?")
        #expect(RequestPolicy.quoted(String(repeating: "x", count: 150)) == String(repeating: "x", count: 100) + "…")
    }
}
