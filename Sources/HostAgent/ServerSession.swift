import FleetProtocol
import Foundation
import SFTPTransport

/// A server of client.toml that a run may use: `[server]` (named ``ClientConfiguration/primaryName``) or a
/// `[[servers]]` mirror, and how to reach it.
struct ServerCandidate: Sendable, Equatable {
    let name: String
    let endpoint: SSHEndpoint

    /// `primary (fleet-web1@fleet.example.org:22)`, for the log.
    var label: String { "\(name) (\(endpoint.user)@\(endpoint.server))" }
}

/// What a run makes of a server it reached.
enum ServerVerdict<Value> {
    /// This server's answer stands: the run goes on with it, or ends with this result (already reported to it).
    case use(Step<Value>)
    /// Pass over this server (it serves no usable manifest, or a snapshot or cache that does not match it) and try
    /// the next; the result is the run's should no other server serve a usable one. Nothing of this run was
    /// uploaded to this server. `why` is the few words `skippedServers` shows (default: ``ServerSession/skipReason(_:)``).
    case skip(RunResult, why: String? = nil)
}

/// What the body of ``ServerSession/withFailover(openingSFTP:_:)`` is told about the server it reached.
struct ServerContact {
    let server: ServerCandidate
    /// Connection attempts this run made up to and including this one, over every server.
    let attempts: Int
    /// Of those, the ones that failed.
    let failedAttempts: Int
    /// Whether another server remains to be tried: only then may the body answer ``ServerVerdict/skip(_:)``.
    let canSkip: Bool
    /// The servers passed over so far, in client.toml's order, with why (for the report and heartbeat).
    let skipped: [RunReport.SkippedServer]
}

/// How trying the servers ended.
struct FailoverOutcome<Value> {
    var step: Step<Value>
    /// The server whose answer `step` is; nil when none answered.
    var server: ServerCandidate?
    /// The servers passed over, in client.toml's order, with why.
    var skipped: [RunReport.SkippedServer]
    /// True when `step` is a skipped server's refusal (no server served a usable manifest) that was not
    /// uploaded to `server` yet.
    var unreported = false
}

/// Step 1 of a run: the servers as client.toml lists them (`[server]`, then each `[[servers]]` mirror), and
/// connections to them that are closed on every path out, whose failures are the run's result.
///
/// Failover order: each round tries every server still in play once, in client.toml's order; a server that
/// answers is used at once. A server is out of play for the rest of the run when it shows a host key other
/// than its pinned one or refuses the host's key (trying again cannot change either), or when the body skips
/// it (its manifest is stale, older than one already seen, does not verify, or is missing). Servers that could
/// not be connected to are tried again in the next round, after a jittered exponential back-off, for as long
/// as `connect_retry_seconds` allows. So with the primary down a run goes to the first mirror at once, and a
/// thousand hosts whose servers are all busy still spread themselves out.
struct ServerSession {
    let configuration: ClientConfiguration
    let log: RunLog

    /// `[server]`'s endpoint.
    var endpoint: SSHEndpoint { primary.endpoint }

    var primary: ServerCandidate {
        let server = configuration.server
        return candidate(
            name: ClientConfiguration.primaryName, address: server.address, port: server.port, hostKey: server.hostKey)
    }

    /// Every server in the order a run tries them.
    var servers: [ServerCandidate] {
        [primary]
            + configuration.mirrors.map {
                candidate(name: $0.name, address: $0.address, port: $0.port, hostKey: $0.hostKey)
            }
    }

    private func candidate(name: String, address: String, port: Int, hostKey: SSHPublicKey) -> ServerCandidate {
        ServerCandidate(
            name: name,
            endpoint: SSHEndpoint(
                host: address, port: port, user: configuration.server.user, identityFile: configuration.identityFile,
                pinnedHostKey: hostKey.description,
                connectTimeout: .seconds(configuration.server.connectTimeoutSeconds),
                ioTimeout: .seconds(configuration.server.ioTimeoutSeconds)))
    }

    /// Tries the servers in the failover order (see the type's documentation) until `body` uses one.
    ///
    /// - Returns: what `body` made of the server it used; or, when none was used, the run's result: the last
    ///   skipped server's refusal (`unreported`), refused (a wrong host key or a refused key and no server
    ///   reached), unreachable (with the attempts made), or a local failure (an identity file that cannot be
    ///   loaded, which no server can change).
    func withFailover<Value>(
        openingSFTP: Bool = true, _ body: (SFTPConnection, ServerContact) async -> ServerVerdict<Value>
    ) async -> FailoverOutcome<Value> {
        let servers = self.servers
        let budget = Duration.seconds(configuration.server.connectRetrySeconds)
        let started = ContinuousClock.now
        var attempts = 0
        var failedAttempts = 0
        var round = 0
        var inPlay = Array(servers.indices)
        /// Why each server passed over so far was, by index in `servers`.
        var passedOver: [Int: String] = [:]
        var lastConnectError: SSHError?
        var firstRefusal: RunResult?
        var lastSkip: (index: Int, result: RunResult)?
        func skipped(besides index: Int?) -> [RunReport.SkippedServer] {
            passedOver.keys.sorted().filter { $0 != index }.map {
                RunReport.SkippedServer(name: servers[$0].name, reason: passedOver[$0] ?? "")
            }
        }

        while true {
            round += 1
            var unreachable: [Int] = []
            for (position, index) in inPlay.enumerated() {
                let server = servers[index]
                attempts += 1
                log.phase(
                    "connecting to \(server.endpoint.user)@\(server.endpoint.server)"
                        + (servers.count > 1 ? " (\(server.name))" : "") + (round > 1 ? " (attempt \(round))" : ""))
                let connection: SFTPConnection
                do {
                    connection = try await SFTPConnection.connect(to: server.endpoint, openingSFTP: openingSFTP)
                } catch {
                    failedAttempts += 1
                    if error.code == .invalidConfiguration {
                        // The identity file: the same for every server.
                        var result = result(ofConnecting: error)
                        result.connectAttempts = attempts
                        return FailoverOutcome(step: .done(result), server: nil, skipped: skipped(besides: nil))
                    }
                    if Self.isWorthRetrying(error) {
                        unreachable.append(index)
                        lastConnectError = error
                        passedOver[index] = Self.brief("unreachable: \(error.description)")
                        if servers.count > 1 { log.phase("could not connect to \(server.name): \(error.description)") }
                    } else {
                        passedOver[index] = Self.brief(
                            error.code == .hostKeyMismatch
                                ? "wrong host key, not trusted: \(error.detail)"
                                : error.code == .authenticationRefused
                                    ? "refused this host's key: \(error.detail)" : error.description)
                        firstRefusal = firstRefusal ?? result(ofConnecting: error)
                        log.phase("\(server.name) is skipped for this run: \(error.description)")
                    }
                    continue
                }
                let othersLeft =
                    position + 1 < inPlay.count || (!unreachable.isEmpty && ContinuousClock.now - started < budget)
                let contact = ServerContact(
                    server: server, attempts: attempts, failedAttempts: failedAttempts, canSkip: othersLeft,
                    skipped: skipped(besides: index))
                let verdict = await body(connection, contact)
                await connection.close()
                switch verdict {
                case .use(let step):
                    passedOver[index] = nil
                    return FailoverOutcome(step: step, server: server, skipped: skipped(besides: index))
                case .skip(let result, let why):
                    passedOver[index] = Self.brief(why ?? Self.skipReason(result))
                    lastSkip = (index, result)
                    log.phase("\(server.name) is skipped for this run: \(result.reason)")
                }
            }
            inPlay = unreachable
            guard !inPlay.isEmpty else { break }
            let delay = Self.backoffSeconds(afterAttempt: round)
            let elapsed = ContinuousClock.now - started
            guard elapsed + .seconds(delay) <= budget else { break }
            log.phase(
                (servers.count > 1
                    ? "could not connect to \(inPlay.map { servers[$0].name }.joined(separator: ", "))."
                    : "could not connect: \(lastConnectError?.description ?? "")")
                    + " Trying again in \(String(format: "%.1f", delay)) s")
            try? await Task.sleep(for: .seconds(delay))
        }

        // No server served a usable manifest.
        let elapsed = (ContinuousClock.now - started).components.seconds
        if let skip = lastSkip {
            var result = skip.result
            let others = skipped(besides: skip.index)
            if !others.isEmpty {
                result.reason +=
                    " (from \(servers[skip.index].name); also passed over: "
                    + others.map { "\($0.name): \($0.reason)" }.joined(separator: "; ") + ")"
            }
            return FailoverOutcome(step: .done(result), server: servers[skip.index], skipped: others, unreported: true)
        }
        var result: RunResult
        if let firstRefusal {
            result = firstRefusal
        } else if servers.count == 1, let lastConnectError {
            result = self.result(ofConnecting: lastConnectError)
        } else {
            result = RunResult(
                outcome: .unreachable,
                reason: "no server could be reached. Nothing was changed; the next run tries again.")
        }
        result.connectAttempts = attempts
        if servers.count > 1 {
            result.reason +=
                " Servers: " + skipped(besides: nil).map { "\($0.name): \($0.reason)" }.joined(separator: "; ")
        }
        if attempts > 1 { result.reason += " (\(attempts) attempts over \(elapsed) s)" }
        return FailoverOutcome(step: .done(result), server: nil, skipped: skipped(besides: nil))
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

    /// Why a server's manifest was passed over, in a few words, for the report's `skippedServers`.
    static func skipReason(_ refusal: RunResult) -> String {
        switch refusal.outcome {
        case .stale: "stale manifest: \(refusal.reason)"
        case .unchanged: "no manifest"
        case .unreachable: "unreachable while reading the manifest: \(refusal.reason)"
        default: "manifest refused: \(refusal.reason)"
        }
    }

    /// One line of at most 200 characters: reports carry it to the server, which caps what it reads.
    static func brief(_ text: String) -> String {
        let line = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return line.count <= 200 ? line : String(line.prefix(199)) + "…"
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
