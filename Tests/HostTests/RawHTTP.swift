import Dispatch
import FleetTestSupport
import Foundation
import Glibc

/// HTTP/1.1 over a plain socket to 127.0.0.1, byte for byte as the test writes it: hostile requests (wrong
/// Host, no Origin, huge headers, malformed lines, slow or idle connections) need a client that sends
/// exactly what it is told. Blocking I/O runs on a Dispatch thread, never on the test's executor.
struct RawHTTP {
    struct Response: Sendable {
        var status: Int
        var headers: [(name: String, value: String)]
        var body: String
        /// How long after the request was sent the response was complete (or the connection ended).
        var elapsed: Duration

        func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }

        /// The body as JSON.
        func json() throws -> [String: Any] {
            guard let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
                throw TestSupportError("not a JSON object: \(body)")
            }
            return object
        }
    }

    /// A connected socket, for tests that pace what they send.
    final class Connection: @unchecked Sendable {
        let socket: Int32

        init(port: Int) throws {
            socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard socket >= 0 else { throw TestSupportError("socket(): \(String(cString: strerror(errno)))") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else {
                let message = String(cString: strerror(errno))
                Glibc.close(socket)
                throw TestSupportError("cannot connect to 127.0.0.1:\(port): \(message)")
            }
        }

        deinit { Glibc.close(socket) }

        /// Sends everything; false when the peer has closed (EPIPE, ECONNRESET).
        @discardableResult
        func send(_ bytes: [UInt8]) -> Bool {
            var offset = 0
            while offset < bytes.count {
                let sent = bytes[offset...].withUnsafeBytes {
                    Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                guard sent > 0 else { return false }
                offset += sent
            }
            return true
        }

        @discardableResult
        func send(_ text: String) -> Bool { send(Array(text.utf8)) }

        /// Whether the server has closed the connection (EOF or reset), waiting up to `timeout`; data read
        /// meanwhile is returned as well.
        func readUntilClosed(timeout: Duration) -> (closed: Bool, bytes: [UInt8]) {
            let deadline = ContinuousClock.now + timeout
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let left = deadline - ContinuousClock.now
                guard left > .zero else { return (false, received) }
                var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
                let milliseconds = Int32(min(left / .milliseconds(1), 60_000).rounded(.up))
                guard poll(&poller, 1, max(milliseconds, 1)) > 0 else { continue }
                let count = recv(socket, &buffer, buffer.count, 0)
                if count <= 0 { return (true, received) }
                received += buffer[0..<count]
            }
        }

        /// Reads one response: up to the end of its body by Content-Length, or to EOF without one.
        func readResponse(timeout: Duration) throws -> [UInt8] {
            let deadline = ContinuousClock.now + timeout
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                if let expected = RawHTTP.completeLength(received), received.count >= expected { return received }
                let left = deadline - ContinuousClock.now
                guard left > .zero else {
                    let text = String(decoding: received, as: UTF8.self)
                    throw TestSupportError("no complete response in time; got: \(text)")
                }
                var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
                let milliseconds = Int32(min(left / .milliseconds(1), 60_000).rounded(.up))
                guard poll(&poller, 1, max(milliseconds, 1)) > 0 else { continue }
                let count = recv(socket, &buffer, buffer.count, 0)
                if count <= 0 { return received }
                received += buffer[0..<count]
            }
        }
    }

    let port: Int

    /// Sends `request` (the exact bytes) and reads the response.
    func exchange(_ request: [UInt8], timeout: Duration = .seconds(30)) async throws -> Response {
        let port = self.port
        return try await Self.offExecutor {
            let started = ContinuousClock.now
            let connection = try Connection(port: port)
            connection.send(request)
            let bytes = try connection.readResponse(timeout: timeout)
            return try Self.parse(bytes, elapsed: ContinuousClock.now - started)
        }
    }

    func exchange(_ request: String, timeout: Duration = .seconds(30)) async throws -> Response {
        try await exchange(Array(request.utf8), timeout: timeout)
    }

    /// A request with the page's own Host (unless `host` says otherwise, or nil for none) and `headers`.
    func request(
        _ method: String, _ target: String, host: String? = "", headers: [(String, String)] = [], body: String = "",
        timeout: Duration = .seconds(30)
    ) async throws -> Response {
        var text = "\(method) \(target) HTTP/1.1\r\n"
        if let host { text += "Host: \(host.isEmpty ? "127.0.0.1:\(port)" : host)\r\n" }
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + body
        return try await exchange(text, timeout: timeout)
    }

    func get(
        _ target: String, host: String? = "", headers: [(String, String)] = [], timeout: Duration = .seconds(30)
    ) async throws -> Response {
        try await request("GET", target, host: host, headers: headers, timeout: timeout)
    }

    /// A press as the page's own script makes it: its Origin, asking for JSON.
    func press(origin: String? = nil, headers: [(String, String)] = []) async throws -> Response {
        try await request(
            "POST", "/run",
            headers: [("Origin", origin ?? "http://127.0.0.1:\(port)"), ("Accept", "application/json")] + headers)
    }

    /// Runs blocking socket work on a Dispatch thread.
    static func offExecutor<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// The length of a complete response once its head is in and it has a Content-Length; nil otherwise.
    static func completeLength(_ bytes: [UInt8]) -> Int? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.indices.dropLast(3).first(where: { Array(bytes[$0..<$0 + 4]) == separator }) else {
            return nil
        }
        let head = String(decoding: bytes[..<end], as: UTF8.self)
        for line in head.split(separator: "\r\n").dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "content-length",
                let length = Int(parts[1].trimmingCharacters(in: .whitespaces))
            {
                return end + 4 + length
            }
        }
        return nil
    }

    static func parse(_ bytes: [UInt8], elapsed: Duration) throws -> Response {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let headEnd = text.range(of: "\r\n\r\n") else {
            throw TestSupportError(
                "not an HTTP response: \(text.isEmpty ? "(nothing: the connection was closed)" : text)")
        }
        let lines = text[..<headEnd.lowerBound].split(separator: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw TestSupportError("not an HTTP status line: \(lines.first ?? "")")
        }
        let headers = lines.dropFirst().compactMap { line -> (name: String, value: String)? in
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            return (String(parts[0]), parts[1].trimmingCharacters(in: .whitespaces))
        }
        return Response(status: status, headers: headers, body: String(text[headEnd.upperBound...]), elapsed: elapsed)
    }
}
