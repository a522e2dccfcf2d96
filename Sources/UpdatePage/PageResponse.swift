import Foundation
import NIOCore
import NIOHTTP1

/// What the page answers: a status, a body and its type. The server adds the headers every response carries
/// (length, `Connection: close`, no caching, no framing, the content security policy).
struct PageResponse: Sendable {
    var status: Int
    var contentType: String
    var body: [UInt8]
    var headers: [(name: String, value: String)] = []
    /// The nonce the page's inline style and script carry (HTML only).
    var nonce: String?

    /// A plain-text message: refusals and errors say what happened in one sentence or two.
    static func text(_ status: Int, _ message: String, headers: [(name: String, value: String)] = []) -> PageResponse {
        PageResponse(
            status: status, contentType: "text/plain; charset=utf-8", body: Array((message + "\n").utf8),
            headers: headers)
    }

    static func json(_ status: Int, _ value: some Encodable) -> PageResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = (try? encoder.encode(value)).map(Array.init) ?? Array("{}".utf8)
        return PageResponse(status: status, contentType: "application/json", body: body)
    }

    static func html(_ text: String, nonce: String) -> PageResponse {
        PageResponse(status: 200, contentType: "text/html; charset=utf-8", body: Array(text.utf8), nonce: nonce)
    }

    /// The `Content-Security-Policy`: nothing but this page's own inline style and script, fetches to itself,
    /// and no framing (so no other site can overlay the button and trick a click).
    var contentSecurityPolicy: String {
        if let nonce {
            return "default-src 'none'; style-src 'nonce-\(nonce)'; script-src 'nonce-\(nonce)'; connect-src 'self'; "
                + "img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        }
        return "default-src 'none'; frame-ancestors 'none'"
    }
}

extension PageResponse {
    /// The response head with the headers every answer carries, and the body.
    func encoded(allocator: ByteBufferAllocator) -> (head: HTTPResponseHead, body: ByteBuffer) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.count)")
        // One request per connection: nothing stays open waiting for a next one.
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Cache-Control", value: "no-store")
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        headers.add(name: "X-Frame-Options", value: "DENY")
        // Not no-referrer: under that policy browsers send `Origin: null` with the page's own form posts.
        headers.add(name: "Referrer-Policy", value: "same-origin")
        headers.add(name: "Cross-Origin-Resource-Policy", value: "same-origin")
        headers.add(name: "Content-Security-Policy", value: contentSecurityPolicy)
        for (name, value) in self.headers { headers.add(name: name, value: value) }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
        return (head, allocator.buffer(bytes: body))
    }
}
