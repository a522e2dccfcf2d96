/// Where `fleet-client serve` binds when systemd does not hand it a socket: 127.0.0.1 and a port, nothing else.
///
/// The page starts runs on this machine, so it must be reachable from this machine only. Every other
/// address (0.0.0.0, a LAN address, IPv6, other 127/8 addresses, names) is refused at parse time: the Host
/// check accepts `127.0.0.1:<port>` and `localhost:<port>` only, so nothing else could serve it anyway.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// The default: the port the design and the NixOS module promise.
    public static let standard = ListenAddress(validatedPort: 9999)

    /// 0 asks the kernel for a free port (tests); the page learns the real one from the socket.
    public let port: Int

    private init(validatedPort port: Int) {
        self.port = port
    }

    /// Parses `127.0.0.1:PORT` (or `localhost:PORT`, which means the same address).
    public init(parsing text: String) throws(UpdatePageError) {
        guard let colon = text.lastIndex(of: ":") else {
            throw UpdatePageError("--listen \(text): expected 127.0.0.1:PORT")
        }
        let host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard host == "127.0.0.1" || host.lowercased() == "localhost" else {
            throw UpdatePageError(
                "--listen \(text): the page listens on the loopback address 127.0.0.1 only (127.0.0.1:PORT), "
                    + "so that only this machine can press its button; \(host.isEmpty ? "an empty address" : host) "
                    + "is refused")
        }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber),
            portText.count <= 5, let port = Int(portText), port <= 65535
        else {
            throw UpdatePageError("--listen \(text): the port must be a number from 0 to 65535")
        }
        self.init(validatedPort: port)
    }

    public var description: String { "127.0.0.1:\(port)" }
}
