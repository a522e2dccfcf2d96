import CommandRunner
import FleetProtocol
import Foundation
import SFTPTransport

/// Magic rollback's test: after an activation, can this machine still reach the fleet server over a *new*
/// SSH connection, and do the health checks pass?
///
/// Attempts are spread over the window; the first attempt that succeeds confirms. An outage shorter than the
/// window therefore causes no rollback, and a longer one exactly one.
struct Confirmation {
    let configuration: ClientConfiguration
    let endpoint: SSHEndpoint
    /// client.toml's other servers (`[server]` and the mirrors but ``endpoint``), tried in order when
    /// ``endpoint`` cannot be reached or written to: any of them proves this machine can still reach the fleet.
    var otherEndpoints: [SSHEndpoint] = []
    let log: RunLog
    /// What time it is (timestamps, deadlines, durations): the system's, or a test's.
    var clock: WallClock = .system

    /// Tries until `deadline` (at least once).
    ///
    /// - Returns: nil when confirmed, else why not (the last attempt's failure).
    func confirm(generation: UInt64, deadline: Date) async -> String? {
        let attempts = max(1, configuration.rollback.confirmAttempts)
        let interval = Double(configuration.rollback.confirmTimeoutSeconds) / Double(attempts)
        var attempt = 0
        var lastFailure = "no attempt was made"
        while true {
            attempt += 1
            let started = clock.now()
            if let failure = await tryOnce(generation: generation, deadline: deadline) {
                lastFailure = failure
                log.phase("confirmation attempt \(attempt) failed: \(failure)")
            } else {
                log.phase(
                    "generation \(generation) confirmed (attempt \(attempt)): the server is reachable and the health checks pass"
                )
                return nil
            }
            let next = min(started.addingTimeInterval(interval), deadline)
            if clock.now() >= deadline { break }
            let wait = next.timeIntervalSinceNow
            if wait > 0 { try? await Task.sleep(for: .milliseconds(Int(wait * 1000))) }
            if clock.now() >= deadline { break }
        }
        return
            "not confirmed within \(configuration.rollback.confirmTimeoutSeconds) s (\(attempt) attempts); last: \(lastFailure)"
    }

    private func tryOnce(generation: UInt64, deadline: Date) async -> String? {
        var firstFailure: String?
        for (index, endpoint) in ([endpoint] + otherEndpoints).enumerated() {
            if index > 0 && deadline.timeIntervalSinceNow <= 0 { break }
            guard let failure = await writeNote(generation: generation, to: endpoint, deadline: deadline) else {
                if index > 0 { log.phase("reached \(endpoint.server) instead") }
                return await runHealthChecks(deadline: deadline)
            }
            firstFailure = firstFailure ?? failure
        }
        return firstFailure
    }

    /// Writes `logs/confirmation.json` over a new connection to `endpoint`; nil when done, else why not.
    private func writeNote(generation: UInt64, to endpoint: SSHEndpoint, deadline: Date) async -> String? {
        var endpoint = endpoint
        let remaining = max(1, Int(deadline.timeIntervalSinceNow.rounded(.up)))
        endpoint.connectTimeout = .seconds(min(configuration.server.connectTimeoutSeconds, remaining))
        endpoint.ioTimeout = .seconds(min(configuration.server.ioTimeoutSeconds, max(remaining, 5)))
        // Which half failed says what is wrong: reaching the server, or writing to it once reached.
        var connected = false
        do {
            let note = ConfirmationNote(
                host: configuration.host.value, generation: generation, at: UTCTime.iso(clock.now()))
            try await SFTPConnection.withConnection(to: endpoint) { connection throws(SSHError) in
                connected = true
                try await RunReporter.upload(
                    name: UploadName.confirmationName, bytes: note.encoded(), over: connection)
            }
        } catch {
            return connected
                ? "the server could not be written to: \(error)"
                : "the server could not be reached over a new SSH connection: \(error)"
        }
        return nil
    }

    /// Runs the health checks within the window; nil when all pass, else the first failure.
    private func runHealthChecks(deadline: Date) async -> String? {
        for check in configuration.healthChecks {
            // A check may not outlive the window; when the window is what stops it, the message says so.
            let remaining = max(1, deadline.timeIntervalSinceNow)
            let cutByWindow = remaining < Double(check.timeoutSeconds)
            let timeout = min(Double(check.timeoutSeconds), remaining)
            do {
                let output = try await Command.run(
                    check.command[0], Array(check.command.dropFirst()), timeout: .milliseconds(Int(timeout * 1000)))
                log.output(
                    of: "health check \(check.name): \(check.command.joined(separator: " "))",
                    exitCode: output.exitCode,
                    standardOutput: output.standardOutput, standardError: output.standardError)
                guard output.succeeded else {
                    return "health check \(quoted(check.name)) exited with status \(output.exitCode)"
                }
            } catch {
                guard error.reason.hasPrefix("did not finish") else {
                    return "health check \(quoted(check.name)) \(error.reason)"
                }
                return cutByWindow
                    ? "health check \(quoted(check.name)) was stopped after \(Int(timeout.rounded())) s, when the "
                        + "confirmation window ended (its own timeout is \(check.timeoutSeconds) s)"
                    : "health check \(quoted(check.name)) did not finish within its timeout of "
                        + "\(check.timeoutSeconds) s and was killed"
            }
        }
        return nil
    }
}
