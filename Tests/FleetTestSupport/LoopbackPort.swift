import Glibc

/// TCP ports on 127.0.0.1 for tests: free ones, and probes.
public enum LoopbackPort {
    /// A port nobody listens on right now (bind port 0, read it, close). Another process may take it before
    /// the caller binds it, so callers retry on "address in use".
    public static func free() throws -> Int {
        let listener = try SilentListener()
        defer { listener.close() }
        return listener.port
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    public static func isAccepting(_ port: Int) -> Bool {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { return false }
        defer { Glibc.close(socket) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        return address
    }
}

/// A socket listening on 127.0.0.1 that never accepts: the kernel completes the TCP handshake and then
/// nothing is ever said. A client waiting for an SSH banner here must time out. Call ``close()`` in `defer`.
public final class SilentListener: Sendable {
    public let port: Int
    private let socket: Int32

    public init() throws {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { throw TestSupportError("socket() failed: \(String(cString: strerror(errno))).") }
        var address = LoopbackPort.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        guard bound == 0, named == 0, listen(socket, 16) == 0 else {
            let message = String(cString: strerror(errno))
            Glibc.close(socket)
            throw TestSupportError("Could not listen on 127.0.0.1: \(message).")
        }
        self.socket = socket
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    public func close() {
        Glibc.close(socket)
    }
}
