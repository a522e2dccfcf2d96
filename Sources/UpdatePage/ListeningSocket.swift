import Glibc

/// The page's listening TCP socket: the one systemd passed (socket activation), or one bound here.
///
/// Either way it is checked to be a listening TCP socket on 127.0.0.1 before anything is served, so a unit
/// file that says `ListenStream=9999` (every address) or `0.0.0.0:9999` stops the page with a clear error
/// instead of exposing its button to the network. The page learns its port from the socket, for the Host check.
public struct ListeningSocket: Sendable {
    /// Where the socket came from, for the start-up line.
    public enum Source: String, Sendable {
        case systemd = "socket from systemd"
        case bound = "bound"
    }

    /// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
    public static let systemdDescriptor: Int32 = 3

    public let descriptor: Int32
    public let port: Int
    public let source: Source

    /// The socket `fleet-client serve` serves on: the one systemd passed, if it passed one (then `--listen`
    /// must not be given: the unit decides the address), else `listen` (default 127.0.0.1:9999) bound here.
    public static func forServe(
        listen: String?, environment: [String: String]
    ) throws(UpdatePageError) -> ListeningSocket {
        var address = ListenAddress.standard
        if let listen { address = try ListenAddress(parsing: listen) }
        if let socket = try fromSystemd(environment: environment) {
            guard listen == nil else {
                throw UpdatePageError(
                    "--listen \(listen ?? "") was given, but systemd passed a socket (LISTEN_FDS): the .socket unit's "
                        + "ListenStream= decides the address; drop --listen")
            }
            return socket
        }
        return try bind(address)
    }

    /// The socket systemd passed, per the `sd_listen_fds` protocol: `LISTEN_PID` is this process and
    /// `LISTEN_FDS` is 1, so fd 3 is it. Nil when systemd passed nothing to this process.
    ///
    /// - Throws: when systemd passed several sockets, or one that is not a listening TCP socket on 127.0.0.1.
    public static func fromSystemd(
        environment: [String: String], processID: Int32? = nil
    ) throws(UpdatePageError) -> ListeningSocket? {
        guard let listenPID = environment["LISTEN_PID"], let count = environment["LISTEN_FDS"] else { return nil }
        // Inherited by a process systemd did not start: not ours.
        guard Int32(listenPID) == processID ?? getpid() else { return nil }
        guard let number = Int(count), number >= 0 else {
            throw UpdatePageError("LISTEN_FDS=\(count) from systemd is not a number of sockets")
        }
        guard number > 0 else { return nil }
        guard number == 1 else {
            throw UpdatePageError(
                "systemd passed \(number) sockets (LISTEN_FDS=\(number)); the page takes exactly one: "
                    + "ListenStream=127.0.0.1:9999 in its .socket unit")
        }
        return try validated(systemdDescriptor, source: .systemd)
    }

    /// Binds and listens on `address` (127.0.0.1 only: ``ListenAddress`` admits nothing else).
    public static func bind(_ address: ListenAddress) throws(UpdatePageError) -> ListeningSocket {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw UpdatePageError("cannot create a socket: \(errorText())") }
        var reuse: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = in_port_t(UInt16(address.port).bigEndian)
        socketAddress.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            let code = errno
            Glibc.close(descriptor)
            let hint = code == EADDRINUSE ? " (another fleet-client serve, or its systemd socket unit, has it)" : ""
            throw UpdatePageError("cannot listen on \(address): \(errorText(code))\(hint)")
        }
        guard listen(descriptor, 64) == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw UpdatePageError("cannot listen on \(address): \(errorText(code))")
        }
        do {
            return try validated(descriptor, source: .bound)
        } catch {
            Glibc.close(descriptor)
            throw error
        }
    }

    /// Closes the socket when it is not handed to a server (which closes it itself).
    public func close() {
        Glibc.close(descriptor)
    }

    /// Checks that `descriptor` is a listening TCP socket on 127.0.0.1 and reads its port. It is also made
    /// close-on-exec, so that a run started by the page does not inherit it.
    static func validated(_ descriptor: Int32, source: Source) throws(UpdatePageError) -> ListeningSocket {
        let what = source == .systemd ? "the socket systemd passed (fd \(descriptor))" : "the socket"
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw UpdatePageError("\(what) cannot be read: \(errorText())")
        }
        guard status.st_mode & S_IFMT == S_IFSOCK else { throw UpdatePageError("\(what) is not a socket") }
        guard option(descriptor, SO_TYPE) == Int32(SOCK_STREAM.rawValue) else {
            throw UpdatePageError("\(what) is not a TCP stream socket (ListenStream=, not ListenDatagram=)")
        }
        guard option(descriptor, SO_ACCEPTCONN) == 1 else {
            throw UpdatePageError("\(what) is not listening (the .socket unit needs Accept=no)")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else { throw UpdatePageError("\(what) has no address: \(errorText())") }
        let address = describe(storage)
        guard storage.ss_family == sa_family_t(AF_INET), let port = loopbackPort(storage) else {
            throw UpdatePageError(
                "\(what) listens on \(address); the page serves 127.0.0.1 only, so that only this machine can "
                    + "press its button (ListenStream=127.0.0.1:9999)")
        }
        _ = fcntl(descriptor, F_SETFD, fcntl(descriptor, F_GETFD) | FD_CLOEXEC)
        return ListeningSocket(descriptor: descriptor, port: port, source: source)
    }

    private static func option(_ descriptor: Int32, _ name: Int32) -> Int32? {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(descriptor, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
    }

    /// The port of an IPv4 address that is exactly 127.0.0.1.
    private static func loopbackPort(_ storage: sockaddr_storage) -> Int? {
        var storage = storage
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                guard UInt32(bigEndian: address.pointee.sin_addr.s_addr) == 0x7f00_0001 else { return nil }
                return Int(UInt16(bigEndian: address.pointee.sin_port))
            }
        }
    }

    /// `0.0.0.0:9999`, `[::]:9999`, or the family number: for the error message.
    private static func describe(_ storage: sockaddr_storage) -> String {
        var storage = storage
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                    var raw = address.pointee.sin_addr
                    inet_ntop(AF_INET, &raw, &text, socklen_t(text.count))
                    return "\(cString(text)):\(UInt16(bigEndian: address.pointee.sin_port))"
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    var raw = address.pointee.sin6_addr
                    inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
                    return "[\(cString(text))]:\(UInt16(bigEndian: address.pointee.sin6_port))"
                }
            }
        case AF_UNIX:
            return "a Unix socket"
        default:
            return "an address of family \(storage.ss_family)"
        }
    }

    private static func cString(_ characters: [CChar]) -> String {
        String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func errorText(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }
}
