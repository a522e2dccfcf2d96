import FleetProtocol
import Foundation
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
    func withConnection<Value>(openingSFTP: Bool = true, _ body: (SFTPConnection) async -> Step<Value>) async
        -> Step<Value>
    {
        await withConnection(openingSFTP: openingSFTP) { connection, _ in await body(connection) }
    }

    /// Connects and authenticates, runs `body` with the number of attempts that took, and closes the connection.
    ///
    /// A server that refuses, resets or does not answer before authentication (a burst of polls filling sshd's
    /// backlog and `MaxStartups`, a restart, a network blip) is tried again with jittered exponential back-off
    /// for up to `connect_retry_seconds`, so that a thousand hosts polling at once spread themselves out instead
    /// of failing; a wrong host key or a refused key is not retried: trying again cannot change it.
    ///
    /// - Returns: what `body` returned, or the run's result when connecting failed: refused (host key,
    ///   authentication), unreachable (network, with the attempts made), or a local failure (an identity file
    ///   that cannot be loaded).
    func withConnection<Value>(
        openingSFTP: Bool = true, _ body: (SFTPConnection, _ attempts: Int) async -> Step<Value>
    ) async -> Step<Value> {
        let endpoint = self.endpoint
        let budget = Duration.seconds(configuration.server.connectRetrySeconds)
        let started = ContinuousClock.now
        var attempts = 0
        while true {
            attempts += 1
            log.phase(
                "connecting to \(endpoint.user)@\(endpoint.server)" + (attempts > 1 ? " (attempt \(attempts))" : ""))
            let connection: SFTPConnection
            do {
                connection = try await SFTPConnection.connect(to: endpoint, openingSFTP: openingSFTP)
            } catch {
                let delay = Self.backoffSeconds(afterAttempt: attempts)
                let elapsed = ContinuousClock.now - started
                if Self.isWorthRetrying(error), elapsed + .seconds(delay) <= budget {
                    log.phase(
                        "could not connect: \(error.description) Trying again in \(String(format: "%.1f", delay)) s")
                    try? await Task.sleep(for: .seconds(delay))
                    continue
                }
                var result = result(ofConnecting: error)
                result.connectAttempts = attempts
                if attempts > 1 {
                    result.reason += " (\(attempts) attempts over \(elapsed.components.seconds) s)"
                }
                return .done(result)
            }
            let value = await body(connection, attempts)
            await connection.close()
            return value
        }
    }

    /// Failures before authentication that another try may not meet.
    static func isWorthRetrying(_ error: SSHError) -> Bool {
        switch error.code {
        case .connectFailed, .timeout, .connectionLost: true
        default: false
        }
    }

    /// The wait after the `attempt`th failure: 1, 2, 4 … seconds, at most 30, each drawn between half and all of
    /// it ("equal jitter"), so that hosts that failed together do not come back together.
    static func backoffSeconds(afterAttempt attempt: Int) -> Double {
        let ceiling = min(30.0, pow(2.0, Double(min(attempt, 16) - 1)))
        return Double.random(in: (ceiling / 2)...ceiling)
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
