public import NIOHTTP1

/// What the page serves and its limits. The defaults are the production ones; tests shorten the times.
public struct UpdatePageConfiguration: Sendable {
    /// This host's name, as client.toml says.
    public var host: String
    /// Where `state.json` is, to show what the host last did.
    public var stateDirectory: String
    /// What a press runs (no shell): it starts `fleet-client.service` and returns; the run writes its progress
    /// into the state directory, where the page reads it.
    public var startCommand = UpdatePageConfiguration.defaultStartCommand
    /// How long a press waits for its run to show up in the progress file once the start command returned.
    public var startTimeout: Duration = .seconds(30)
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

    public static let defaultStartCommand = ["systemctl", "start", "--no-block", "fleet-client.service"]

    public init(host: String, stateDirectory: String) {
        self.host = host
        self.stateDirectory = stateDirectory
    }
}
