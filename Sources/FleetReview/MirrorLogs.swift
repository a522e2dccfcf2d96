/// A mirror's hosts' `logs/`, pulled onto this server: `<root>/<host>/logs/`, laid out like a chroot root, so that
/// they are read by the same ingest, with the same rules for untrusted uploads, as the hosts' own.
public struct MirrorLogs: Sendable, Equatable {
    /// The mirror's name in fleet.toml (host-name rule, so `<host>@<mirror>` keys never collide with a host's).
    public var mirror: String
    /// The directory holding one `<host>/logs/` per host, as pulled.
    public var root: String

    public init(mirror: String, root: String) {
        self.mirror = mirror
        self.root = root
    }
}
