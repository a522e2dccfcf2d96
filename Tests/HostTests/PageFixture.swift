import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import HostAgent
import UpdatePage

/// The page served in this test process by the `UpdatePage` library on 127.0.0.1 and a kernel-chosen port,
/// with short limits, and a client.toml of its own. Presses start the real `fleet-client run` built beside
/// the tests, detached, through ``StandInStart``; its server is `serverPort`: a closed port (runs end at once, unreachable) or a
/// ``SilentListener`` (runs wait for the connect timeout, so a test can press while one is going).
struct PageFixture {
    let directory: TestDirectory
    let server: UpdatePageServer
    let configPath: String
    let stateDirectory: String
    /// What a press runs.
    let startCommand: [String]
    private let serving: Task<Void, Never>

    var port: Int { server.port }
    var http: RawHTTP { RawHTTP(port: port) }

    static func start(
        serverPort: Int? = nil, connectTimeoutSeconds: Int = 10,
        configure: (inout UpdatePageConfiguration) -> Void = { _ in }
    ) async throws -> PageFixture {
        let directory = try TestDirectory.makeTemporary()
        do {
            let key = try KeyPair.generate(at: directory.path("alpha.key"), comment: "root@alpha")
            let fleetKey = try SigningKey(generatingWithName: "fleet-1").publicKey.nixFormat
            let port = try serverPort ?? LoopbackPort.free()
            try directory.writeFile(
                "client.toml",
                text: """
                    host = "alpha"
                    fleet_public_key = "\(fleetKey)"
                    identity_file = "\(key.privateKeyPath)"
                    state_dir = "\(directory.path("state"))"
                    profile = "\(directory.path("profiles/system"))"

                    [server]
                    address = "127.0.0.1"
                    port = \(port)
                    user = "fleet-alpha"
                    host_key = "\(key.publicKeyLine)"
                    connect_timeout_seconds = \(connectTimeoutSeconds)
                    connect_retry_seconds = 0

                    """)
            var configuration = UpdatePageConfiguration(host: "alpha", stateDirectory: directory.path("state"))
            configuration.startCommand = try StandInStart.command(config: directory.path("client.toml"), in: directory)
            configuration.minimumRunInterval = .zero
            // A press answers after its start command ran; on a machine loaded by the parallel suite that can
            // take longer than the 10 s a real page allows. Tests of the deadline set their own.
            configuration.requestTimeout = .seconds(60)
            configure(&configuration)
            let server = try await UpdatePageServer.start(
                configuration, socket: try ListeningSocket.bind(try ListenAddress(parsing: "127.0.0.1:0")))
            return PageFixture(
                directory: directory, server: server, configPath: directory.path("client.toml"),
                stateDirectory: directory.path("state"), startCommand: configuration.startCommand,
                serving: Task { await server.run() })
        } catch {
            directory.remove()
            throw error
        }
    }

    /// Stops serving, and ends a run still going (a detached process: it would outlive the test).
    func stop() {
        server.stop()
        serving.cancel()
        for pid in runProcesses() { kill(pid, SIGKILL) }
        directory.remove()
    }

    /// Polls `GET /run` until the run is finished; returns its JSON `run`.
    func waitForFinishedRun(timeout: Duration = .seconds(120)) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let run = try await http.get("/run").json()["run"] as? [String: Any]
            if run?["phase"] as? String == "finished", let run { return run }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSupportError("the run did not finish in time")
    }

    /// The `fleet-client run` processes started with this fixture's client.toml right now.
    func runProcesses() -> [pid_t] {
        ProcessTable.processes(commandLineContaining: "run --config \(configPath)")
    }
}
