import FleetTestSupport
import Foundation
import Glibc

/// Another origin for the browser tests: one fixed HTML page served on 127.0.0.1 and a free port, from a
/// thread, to every request, until ``stop()``.
final class StaticPage: Sendable {
    let port: Int
    private let socket: Int32

    init(html: String) throws {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { throw TestSupportError("socket(): \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0
            }
        }
        guard bound, listen(socket, 16) == 0 else {
            Glibc.close(socket)
            throw TestSupportError("cannot listen on 127.0.0.1")
        }
        self.socket = socket
        self.port = Int(UInt16(bigEndian: address.sin_port))
        let body = Array(html.utf8)
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: \(body.count)\r\n"
            + "Connection: close\r\nCache-Control: no-store\r\n\r\n"
        let response = Array(head.utf8) + body
        Thread.detachNewThread {
            while true {
                let client = accept(socket, nil, nil)
                guard client >= 0 else { return }  // closed by stop()
                var timeout = timeval(tv_sec: 2, tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                var request: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while !request.containsHeadEnd() {
                    let count = recv(client, &buffer, buffer.count, 0)
                    guard count > 0 else { break }
                    request += buffer[0..<count]
                }
                _ = response.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                Glibc.close(client)
            }
        }
    }

    func stop() {
        shutdown(socket, Int32(SHUT_RDWR))
        Glibc.close(socket)
    }
}

extension [UInt8] {
    fileprivate func containsHeadEnd() -> Bool {
        count >= 4 && indices.dropLast(3).contains { Array(self[$0..<$0 + 4]) == [13, 10, 13, 10] }
    }
}
