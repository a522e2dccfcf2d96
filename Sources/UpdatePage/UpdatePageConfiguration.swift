public import NIOHTTP1

/// What the page serves and its limits. The defaults are the production ones; tests shorten the times.
public struct UpdatePageConfiguration: Sendable {
    /// This host's name, as client.toml says.
    public var host: String
    /// Where `state.json` is, to show what the host last did.
    public var stateDirectory: String
    /// The client.toml a run is started with (`run --config`).
    public var clientConfigurationPath: String
    /// The fleet-client a run is; the page's own executable by default.
    public var runExecutable = "/proc/self/exe"
    /// How long after a run started the next may start.
    public var minimumRunInterval: Duration = .seconds(60)
    /// How long a connection has to deliver its request (and then the page to answer).
    public var requestTimeout: Duration = .seconds(10)
    /// Connections open at once; more get a 503.
    public var maximumConnections = 32
    /// Request bodies larger than this get a 413 (a press has none).
    public var maximumBodyBytes = 1024
    /// Request line and headers: generous for a browser with cookies for localhost, small for an attacker.
    public var headerLimits: NIOHTTPDecoderLimitConfiguration = {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = 8 * 1024
        limits.maxHeaderListSize = 16 * 1024
        limits.maxHeaderFieldCount = 100
        return limits
    }()

    public init(host: String, stateDirectory: String, clientConfigurationPath: String) {
        self.host = host
        self.stateDirectory = stateDirectory
        self.clientConfigurationPath = clientConfigurationPath
    }
}
