import FleetProtocol
import SFTPTransport

/// Step 1 of a run: the server as client.toml describes it, and connections to it that are closed on every path
/// out, whose failures are the run's result.
struct ServerSession {
    let configuration: ClientConfiguration
    let log: RunLog

    var endpoint: SSHEndpoint {
        SSHEndpoint(
            host: configuration.server.address, port: configuration.server.port, user: configuration.server.user,
            identityFile: configuration.identityFile, pinnedHostKey: configuration.server.hostKey.description,
            connectTimeout: .seconds(configuration.server.connectTimeoutSeconds),
            ioTimeout: .seconds(configuration.server.ioTimeoutSeconds))
    }

    /// Connects and authenticates, runs `body`, and closes the connection.
    ///
    /// - Returns: what `body` returned, or the run's result when connecting failed: refused (host key,
    ///   authentication), unreachable (network), or a local failure (an identity file that cannot be loaded).
    func withConnection<Value>(openingSFTP: Bool = true, _ body: (SFTPConnection) async -> Step<Value>) async
        -> Step<Value>
    {
        let endpoint = self.endpoint
        log.phase("connecting to \(endpoint.user)@\(endpoint.server)")
        do {
            return try await SFTPConnection.withConnection(to: endpoint, openingSFTP: openingSFTP) { connection in
                await body(connection)
            }
        } catch {
            return .done(result(ofConnecting: error))
        }
    }

    /// What a failure to connect means for the run.
    func result(ofConnecting error: SSHError) -> RunResult {
        switch error.code {
        case .hostKeyMismatch, .authenticationRefused:
            RunResult(outcome: .refused, reason: error.description)
        case .invalidConfiguration:
            // A missing or unreadable identity file is this host's problem, not the generation's.
            RunResult(
                outcome: .localFailure,
                reason: "\(error.description) (check identity_file \(configuration.identityFile) and [server] "
                    + "host_key in client.toml); nothing was applied, and the next run tries again")
        default:
            RunResult(
                outcome: .unreachable, reason: "\(error.description) Nothing was changed; the next run tries again.")
        }
    }
}
