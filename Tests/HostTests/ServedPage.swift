import FleetTestSupport
import Foundation
import Glibc

/// The real `fleet-client serve` as a child process (its own process group): bound with `--listen`, or
/// socket-activated by `systemd-socket-activate`. ``stop()`` ends it; a run it started is not its child.
struct ServedPage {
    static let socketActivate = "/usr/bin/systemd-socket-activate"

    let process: SpawnedProcess
    let port: Int
    /// The client.toml its runs are started with.
    let config: String

    var http: RawHTTP { RawHTTP(port: port) }

    /// `fleet-client serve --config <config> --listen 127.0.0.1:0 --min-interval 0 --start-command <stand-in>
    /// <extra>`; the port is read from the line it prints when it serves. Presses start the real run through
    /// ``StandInStart``'s script, written into `directory`.
    ///
    /// - Parameter runAs: a user id to serve as (with its group, no supplementary groups), as the units' dynamic
    ///   user does; root when nil.
    static func start(
        config: String, logPath: String, directory: TestDirectory, runAs: UInt32? = nil, extraArguments: [String] = [],
        environment: [String: String] = [:]
    ) async throws -> ServedPage {
        let start = try StandInStart.command(config: config, in: directory)
        let user = runAs.map { ["/usr/bin/setpriv", "--reuid=\($0)", "--regid=\($0)", "--clear-groups"] } ?? []
        let process = try SpawnedProcess(
            user + [
                FleetFixture.executable("fleet-client"), "serve", "--config", config, "--listen", "127.0.0.1:0",
                "--min-interval", "0", "--start-command", start.joined(separator: " "),
            ] + extraArguments,
            logPath: logPath, environment: environment)
        do {
            let log = try await process.waitForLog("serving http://127.0.0.1:")
            let after = log.components(separatedBy: "serving http://127.0.0.1:")[1]
            guard let port = Int(after.prefix { $0.isNumber }) else { throw TestSupportError("no port in: \(log)") }
            return ServedPage(process: process, port: port, config: config)
        } catch {
            process.stop()
            throw error
        }
    }

    /// `systemd-socket-activate -l <address> fleet-client serve --config <config> <extra>`: systemd's tool
    /// binds and listens, and on the first connection execs fleet-client (same PID) with the socket as fd 3
    /// and `LISTEN_FDS=1`, `LISTEN_PID=<pid>`.
    static func socketActivated(
        address: String, port: Int, config: String, logPath: String, directory: TestDirectory,
        extraArguments: [String] = [], environment: [String: String] = [:]
    ) async throws -> ServedPage {
        let start = try StandInStart.command(config: config, in: directory)
        let process = try SpawnedProcess(
            [
                socketActivate, "-l", address, FleetFixture.executable("fleet-client"), "serve", "--config", config,
                "--start-command", start.joined(separator: " "),
            ] + extraArguments,
            logPath: logPath, environment: environment)
        do {
            _ = try await process.waitForLog("Listening on \(address)")
            return ServedPage(process: process, port: port, config: config)
        } catch {
            process.stop()
            throw error
        }
    }

    /// Stops the page, and a run still going (a detached process: it would outlive the test).
    func stop() {
        process.stop()
        for pid in ProcessTable.processes(commandLineContaining: "run --config \(config)") { kill(pid, SIGKILL) }
    }
}
