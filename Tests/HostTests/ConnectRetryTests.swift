import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import Glibc
import ServerStore
import Testing

/// A run that cannot connect tries again with back-off, within `connect_retry_seconds`; the attempts that failed
/// since the host last got through reach the server with its next heartbeat or report, and `fleet status` shows
/// them. Real sshd and client; the "busy server" is a port nothing listens on until a forwarder opens it.
@Suite("connection retries", .serialized)
struct ConnectRetryTests {
    @Test func aRunRetriesUntilTheServerListensAndStatusShowsTheFailedAttempts() async throws {
        let fleet = try await ClientFleet.start(hosts: ["retryhost"])
        defer { fleet.stop() }
        try await fleet.writeClientConfiguration("retryhost")
        #expect(try await fleet.client("retryhost").exitCode == RunOutcome.applied.exitStatus)
        #expect(try fleet.state("retryhost").failedConnectAttempts == nil)

        // Nothing listens on the port: every attempt within 3 s is refused, then the run gives up, unreachable.
        let port = try LoopbackPort.free()
        try fleet.editClientConfiguration("retryhost") { text in
            text.replacingOccurrences(of: "port = \(fleet.sshd.port)", with: "port = \(port)")
                .replacingOccurrences(of: "connect_retry_seconds = 0", with: "connect_retry_seconds = 3")
        }
        var output = try await fleet.client("retryhost")
        #expect(output.exitCode == RunOutcome.unreachable.exitStatus, "\(output.standardError)")
        #expect(output.standardError.contains("(attempt 2)"), "\(output.standardError)")
        let failedFirst = try #require(try fleet.state("retryhost").failedConnectAttempts)
        #expect(failedFirst >= 2, "every attempt of the run counted")
        #expect(output.standardError.contains("\(failedFirst) attempts over"), "\(output.standardError)")

        // The port opens 2 s into the next run (a forwarder to the real sshd): the run gets through on a later
        // attempt, and its heartbeat tells the server how many attempts failed since the last contact.
        try fleet.editClientConfiguration("retryhost") { text in
            text.replacingOccurrences(of: "connect_retry_seconds = 3", with: "connect_retry_seconds = 60")
        }
        let forwarder = try Forwarder(from: port, to: fleet.sshd.port, after: 2)
        defer { forwarder.stop() }
        output = try await fleet.client("retryhost")
        #expect(output.exitCode == RunOutcome.unchanged.exitStatus, "\(output.standardError)")
        #expect(output.standardError.contains("Trying again in"), "\(output.standardError)")
        #expect(try fleet.state("retryhost").failedConnectAttempts == nil, "forgotten once told")
        let beat = try HeartbeatFiles.heartbeat(in: try fleet.layout("retryhost").logs)
        let told = try #require(beat.failedConnectAttempts)
        #expect(told > failedFirst, "the earlier run's and this run's failed attempts: \(told)")

        let status = try await fleet.fixture.fleet(["status", "--json"])
        let rows = try JSONDecoder().decode(StatusOutput.self, from: Data(status.standardOutput.utf8)).hosts
        #expect(rows.first?.failedConnectAttempts == told, "\(status.standardOutput)")
        let table = try await fleet.fixture.fleet(["status"])
        #expect(table.standardOutput.contains("retryhost: \(told) failed since it last got through"))

        // Got through at once: the next heartbeat says none failed.
        output = try await fleet.client("retryhost")
        #expect(output.exitCode == RunOutcome.unchanged.exitStatus)
        #expect(!output.standardError.contains("Trying again"))
        let next = try HeartbeatFiles.heartbeat(in: try fleet.layout("retryhost").logs)
        #expect(next.failedConnectAttempts == 0)
    }

    @Test func aWrongHostKeyIsNotRetried() async throws {
        let fleet = try await ClientFleet.start(hosts: ["retrykey"])
        defer { fleet.stop() }
        try await fleet.writeClientConfiguration("retrykey")
        let stranger = try KeyPair.generate(
            at: fleet.clients.path("stranger"), comment: "stranger", type: "ed25519")
        try fleet.editClientConfiguration("retrykey") { text in
            text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                line.hasPrefix("host_key = ") ? "host_key = \"\(stranger.publicKeyLine)\"" : String(line)
            }.joined(separator: "\n")
        }
        let output = try await fleet.client("retrykey")
        #expect(output.exitCode == RunOutcome.refused.exitStatus, "\(output.standardError)")
        #expect(!output.standardError.contains("attempt 2"), "trying again cannot change a host key")
    }

    /// Hostile counts are refused at ingest, naming the field; the host's earlier word stands.
    @Test func absurdAttemptCountsAreRefusedAtIngest() async throws {
        let review = try await ReviewFixture(hosts: ["retryhostile"])
        defer { review.remove() }
        var beat = Heartbeat(
            host: "retryhostile", at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1,
            failedGeneration: nil, lastResult: .unchanged, reason: nil, rebootNeeded: false)
        for value in [-1, Int.max] {
            beat.failedConnectAttempts = value
            try FileIO.writeAtomically(beat.encoded(), to: review.logs("retryhostile") + "/heartbeat.json", mode: 0o640)
            let rows = try await review.statusJSON()
            let row = try #require(rows.first)
            #expect(row.failedConnectAttempts == nil, "\(value)")
            #expect(
                row.warnings.contains { $0.contains("failedConnectAttempts \(value) is outside") }, "\(row.warnings)")
        }
    }

    struct StatusOutput: Decodable {
        var hosts: [HostStatus]
    }
}

/// A TCP forwarder (python3, as the hostile SFTP server tests use) that starts listening on `from` only after
/// `after` seconds and passes each connection to `to`.
final class Forwarder: Sendable {
    let pid: Int32

    init(from: Int, to: Int, after seconds: Int) throws {
        let script = """
            import socket, threading, time
            time.sleep(\(seconds))
            server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", \(from))); server.listen(16)
            def pipe(a, b):
                try:
                    while True:
                        data = a.recv(65536)
                        if not data: break
                        b.sendall(data)
                except OSError: pass
                finally:
                    for s in (a, b):
                        try: s.shutdown(socket.SHUT_RDWR)
                        except OSError: pass
            while True:
                client, _ = server.accept()
                upstream = socket.create_connection(("127.0.0.1", \(to)))
                threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
                threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
            """
        pid = try ProcessTable.spawn(["/usr/bin/python3", "-c", script], logPath: "/dev/null")
    }

    func stop() {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}
