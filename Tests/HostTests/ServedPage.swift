import FleetTestSupport
import Foundation

/// The real `fleet-client serve` as a child process (its own process group): bound with `--listen`, or
/// socket-activated by `systemd-socket-activate`. ``stop()`` ends it and any run it started.
struct ServedPage {
    static let socketActivate = "/usr/bin/systemd-socket-activate"

    let process: SpawnedProcess
    let port: Int

    var http: RawHTTP { RawHTTP(port: port) }

    /// `fleet-client serve --config <config> --listen 127.0.0.1:0 --min-interval 0 <extra>`; the port is read
    /// from the line it prints when it serves.
    static func start(
        config: String, logPath: String, extraArguments: [String] = [], environment: [String: String] = [:]
    ) async throws -> ServedPage {
        let process = try SpawnedProcess(
            [
                FleetFixture.executable("fleet-client"), "serve", "--config", config, "--listen", "127.0.0.1:0",
                "--min-interval", "0",
            ] + extraArguments,
            logPath: logPath, environment: environment)
        do {
            let log = try await process.waitForLog("serving http://127.0.0.1:")
            let after = log.components(separatedBy: "serving http://127.0.0.1:")[1]
            guard let port = Int(after.prefix { $0.isNumber }) else { throw TestSupportError("no port in: \(log)") }
            return ServedPage(process: process, port: port)
        } catch {
            process.stop()
            throw error
        }
    }

    /// `systemd-socket-activate -l <address> fleet-client serve --config <config> <extra>`: systemd's tool
    /// binds and listens, and on the first connection execs fleet-client (same PID) with the socket as fd 3
    /// and `LISTEN_FDS=1`, `LISTEN_PID=<pid>`.
    static func socketActivated(
        address: String, port: Int, config: String, logPath: String, extraArguments: [String] = [],
        environment: [String: String] = [:]
    ) async throws -> ServedPage {
        let process = try SpawnedProcess(
            [socketActivate, "-l", address, FleetFixture.executable("fleet-client"), "serve", "--config", config]
                + extraArguments,
            logPath: logPath, environment: environment)
        do {
            _ = try await process.waitForLog("Listening on \(address)")
            return ServedPage(process: process, port: port)
        } catch {
            process.stop()
            throw error
        }
    }

    func stop() {
        process.stop()
    }
}
