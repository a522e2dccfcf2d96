import FleetTestSupport
import Foundation
import Glibc
import SFTPTransport
import Synchronization
import Testing

/// Real sshd, real chroot, real libssh: the transport as the client will use it.
@Suite(.serialized, .needsRootAndSSHD)
struct SFTPConnectionTests {
    @Test func connectsThroughThePinnedKeyAndReadsAFile() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let content = Array("generation 7\n".utf8)
        try server.publish("manifest", content)

        let connection = try await server.connect()
        #expect(try await connection.readFile("/data/manifest", limit: 1024) == content)
        #expect(connection.hostKeyFingerprint == (try server.endpoint().pinnedHostKeyFingerprint()))
        #expect(connection.hostKeyFingerprint == (try fingerprint(ofPublicKeyLine: server.sshd.hostPublicKey)))

        let attributes = try #require(try await connection.attributes("/data/manifest"))
        #expect(attributes.kind == .regular)
        #expect(attributes.size == Int64(content.count))
        #expect(attributes.permissions == 0o644)
        #expect(try await connection.attributes("/data")?.kind == .directory)
        #expect(try await connection.listDirectory("/").map(\.name).sorted() == ["data", "logs"])
        #expect(try await connection.listDirectory("/data").map(\.name) == ["manifest"])
        #expect(try await connection.canonicalize("/data/../logs/.") == "/logs")
        await connection.close()
    }

    @Test func downloadsAMultiMegabyteFileWithPipelinedReads() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let content = randomBytes(9 << 20 + 12_345)
        try server.publish("snapshot.tar", content)
        let connection = try await server.connect()

        let progress = ProgressLog()
        let local = server.scratch.path("snapshot.tar")
        try await connection.download(
            "/data/snapshot.tar", to: local, expectedSize: Int64(content.count), limit: 64 << 20,
            progress: { progress.record($0) })
        #expect(try server.scratch.readFile("snapshot.tar") == content)
        #expect(progress.last == Int64(content.count))
        #expect(progress.count > 10)

        // The local file is created exclusively: an existing file is never overwritten.
        let existing = await #expect(throws: SSHError.self) {
            try await connection.download("/data/snapshot.tar", to: local, limit: 64 << 20)
        }
        #expect(existing?.code == .localIO)
        #expect(existing?.localErrno == EEXIST)

        // A size other than the expected one is refused before anything is written.
        let wrongSize = await #expect(throws: SSHError.self) {
            try await connection.download(
                "/data/snapshot.tar", to: server.scratch.path("other"), expectedSize: 5, limit: 64 << 20)
        }
        #expect(wrongSize?.code == .limitExceeded)
        #expect(!FileManager.default.fileExists(atPath: server.scratch.path("other")))

        // A failed download leaves no partial local file.
        let missing = await #expect(throws: SSHError.self) {
            try await connection.download("/data/absent", to: server.scratch.path("absent"), limit: 64 << 20)
        }
        #expect(missing?.code == .noSuchFile)
        #expect(!FileManager.default.fileExists(atPath: server.scratch.path("absent")))
        await connection.close()
    }

    @Test func refusesFilesOverTheLimit() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        try server.publish("big", randomBytes(4097))
        let connection = try await server.connect()

        let error = await #expect(throws: SSHError.self) {
            try await connection.readFile("/data/big", limit: 4096)
        }
        #expect(error?.code == .limitExceeded)
        #expect(error?.description.contains("4097") == true)
        let tooBig = await #expect(throws: SSHError.self) {
            try await connection.download("/data/big", to: server.scratch.path("big"), limit: 4096)
        }
        #expect(tooBig?.code == .limitExceeded)
        #expect(try await connection.readFile("/data/big", limit: 4097).count == 4097)
    }

    @Test func reportsMissingFilesAsNoSuchFile() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let connection = try await server.connect()

        let error = await #expect(throws: SSHError.self) {
            try await connection.readFile("/data/manifest", limit: 1024)
        }
        #expect(error?.code == .noSuchFile)
        #expect(error?.sftpStatus == 2)
        let description = error?.description ?? ""
        #expect(description.contains("/data/manifest"))
        #expect(description.contains("\(server.user.name)@127.0.0.1:\(server.sshd.port)"))
        #expect(try await connection.attributes("/data/manifest") == nil)
        // The chroot holds: paths above it resolve inside it.
        let escape = await #expect(throws: SSHError.self) {
            try await connection.readFile("/../../../../etc/passwd", limit: 1 << 20)
        }
        #expect(escape?.code == .noSuchFile)
    }

    @Test func refusesWritesOutsideLogs() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        try server.publish("manifest", Array("signed".utf8))
        let connection = try await server.connect()

        for path in ["/data/evil", "/evil", "/data/manifest"] {
            let error = await #expect(throws: SSHError.self) {
                try await connection.writeFile(path, bytes: Array("x".utf8))
            }
            #expect(error?.code == .permissionDenied, "writing \(path)")
        }
        let rename = await #expect(throws: SSHError.self) {
            try await connection.rename(from: "/data/manifest", to: "/logs/stolen")
        }
        #expect(rename?.code == .permissionDenied)
        let remove = await #expect(throws: SSHError.self) {
            try await connection.remove("/data/manifest")
        }
        #expect(remove?.code == .permissionDenied)
        #expect(try server.root.readFile("chroot/data/manifest") == Array("signed".utf8))
    }

    @Test func writesAndAtomicallyRenamesInsideLogs() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let connection = try await server.connect()
        #expect(try await connection.supportsExtension("posix-rename@openssh.com", version: "1"))

        let report = randomBytes(100_000)  // several write requests
        try await connection.writeFile("/logs/report.json.tmp", bytes: report)
        try await connection.rename(from: "/logs/report.json.tmp", to: "/logs/report.json")
        #expect(try server.root.readFile("chroot/logs/report.json") == report)
        var status = stat()
        #expect(stat(server.root.path("chroot/logs/report.json"), &status) == 0)
        #expect(status.st_mode & 0o777 == 0o640)
        #expect(status.st_uid == server.user.uid)

        // posix-rename replaces an existing target; plain SFTP rename would refuse.
        try await connection.writeFile("/logs/report.json.tmp", bytes: Array("second".utf8))
        try await connection.rename(from: "/logs/report.json.tmp", to: "/logs/report.json")
        #expect(try server.root.readFile("chroot/logs/report.json") == Array("second".utf8))
        #expect(try await connection.listDirectory("/logs").map(\.name) == ["report.json"])

        try await connection.remove("/logs/report.json")
        #expect(try await connection.attributes("/logs/report.json") == nil)
    }

    /// `replaceFile` and small `readFile`s send several requests at once past libssh; libssh's own calls on the
    /// same connection must still line up afterwards, after failures too.
    @Test func replacesFilesWithPipelinedRequestsAndKeepsTheTargetWhenThatFails() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        try server.publish("manifest", Array("signed".utf8))
        try server.publish("empty", [])
        let connection = try await server.connect()

        let log = randomBytes(1 << 20 + 5)  // 33 write requests in flight
        try await connection.replaceFile("/logs/log.txt", bytes: log, through: "/logs/.tmp-log.txt")
        #expect(try server.root.readFile("chroot/logs/log.txt") == log)
        var status = stat()
        #expect(stat(server.root.path("chroot/logs/log.txt"), &status) == 0)
        #expect(status.st_mode & 0o777 == 0o640 && status.st_uid == server.user.uid)
        try await connection.replaceFile("/logs/log.txt", bytes: [], through: "/logs/.tmp-log.txt")
        #expect(try server.root.readFile("chroot/logs/log.txt").isEmpty)
        #expect(try await connection.listDirectory("/logs").map(\.name) == ["log.txt"])

        // Refused at the open: the target stays as it was, and the connection goes on.
        let refused = await #expect(throws: SSHError.self) {
            try await connection.replaceFile("/data/manifest", bytes: Array("forged".utf8), through: "/data/.tmp")
        }
        #expect(refused?.code == .permissionDenied && refused?.sftpStatus == 3, "\(String(describing: refused))")
        #expect(try server.root.readFile("chroot/data/manifest") == Array("signed".utf8))
        // A temporary name in logs/ but a target outside it: written, then the rename is refused.
        let outside = await #expect(throws: SSHError.self) {
            try await connection.replaceFile("/data/manifest", bytes: Array("forged".utf8), through: "/logs/.tmp")
        }
        #expect(outside?.code == .permissionDenied)
        #expect(try server.root.readFile("chroot/data/manifest") == Array("signed".utf8))

        // Small reads: an empty file, a directory, a missing file; then libssh's own calls still line up.
        #expect(try await connection.readFile("/data/empty", limit: 1024).isEmpty)
        let directory = await #expect(throws: SSHError.self) { try await connection.readFile("/data", limit: 1024) }
        #expect(directory?.description.contains("not a regular file") == true)
        let missing = await #expect(throws: SSHError.self) { try await connection.readFile("/none", limit: 1024) }
        #expect(missing?.code == .noSuchFile)
        #expect(try await connection.readFile("/data/manifest", limit: 6) == Array("signed".utf8))
        #expect(try await connection.attributes("/data/manifest")?.size == 6)
        try await connection.download("/logs/.tmp", to: server.scratch.path("tmp"), limit: 1024)
        #expect(try server.scratch.readFile("tmp") == Array("forged".utf8))
        await connection.close()
    }

    @Test func refusesAServerWithAnotherHostKeyBeforeAuthenticating() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let impostor = try KeyPair.generate(at: server.scratch.path("impostor"), comment: "impostor")

        let error = await #expect(throws: SSHError.self) {
            try await SFTPConnection.connect(to: server.endpoint(pinnedHostKey: impostor.publicKeyLine))
        }
        #expect(error?.code == .hostKeyMismatch)
        let description = error?.description ?? ""
        #expect(description.contains(try impostor.fingerprint()), "names the pinned fingerprint: \(description)")
        #expect(
            description.contains(try fingerprint(ofPublicKeyLine: server.sshd.hostPublicKey)),
            "names the presented fingerprint: \(description)")
        #expect(!server.sshd.logText().contains("Accepted publickey"))
    }

    @Test func pinsTheKeyTypeSoAServerWithSeveralKeysPresentsThePinnedOne() async throws {
        let server = try ChrootedSFTPServer.start(hostKeyTypes: ["ed25519", "ecdsa"])
        defer { server.stop() }
        let ecdsa = server.sshd.hostPublicKeys[1]
        #expect(ecdsa.hasPrefix("ecdsa-sha2-nistp256 "))

        let connection = try await SFTPConnection.connect(to: server.endpoint(pinnedHostKey: ecdsa))
        #expect(connection.hostKeyFingerprint == (try fingerprint(ofPublicKeyLine: ecdsa)))
        await connection.close()
    }

    @Test func reportsARefusedClientKey() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let stranger = try KeyPair.generate(at: server.scratch.path("stranger"), comment: "stranger")

        let error = await #expect(throws: SSHError.self) {
            try await SFTPConnection.connect(to: server.endpoint(identityFile: stranger.privateKeyPath))
        }
        #expect(error?.code == .authenticationRefused)
        let missing = await #expect(throws: SSHError.self) {
            try await SFTPConnection.connect(to: server.endpoint(identityFile: server.scratch.path("nope")))
        }
        #expect(missing?.code == .invalidConfiguration)
    }

    @Test func failsFastOnAClosedPort() async throws {
        let port = try LoopbackPort.free()
        let endpoint = SSHEndpoint(
            host: "127.0.0.1", port: port, user: "nobody", identityFile: "/etc/ssh/ssh_host_ed25519_key",
            pinnedHostKey: try placeholderHostKey())
        let started = ContinuousClock.now
        let error = await #expect(throws: SSHError.self) {
            try await SFTPConnection.connect(to: endpoint)
        }
        #expect(error?.code == .connectFailed)
        // Refused at once, not cut by the 10 s connect timeout (the slack is for a loaded machine).
        #expect(ContinuousClock.now - started < .seconds(8))
    }

    @Test func timesOutOnAServerThatNeverSpeaks() async throws {
        let listener = try SilentListener()
        defer { listener.close() }
        let endpoint = SSHEndpoint(
            host: "127.0.0.1", port: listener.port, user: "nobody", identityFile: "/etc/ssh/ssh_host_ed25519_key",
            pinnedHostKey: try placeholderHostKey(), connectTimeout: .seconds(1))
        let started = ContinuousClock.now
        let error = await #expect(throws: SSHError.self) {
            try await SFTPConnection.connect(to: endpoint)
        }
        #expect(error?.code == .timeout)
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func timesOutWhenAnEstablishedServerStalls() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let connection = try await SFTPConnection.connect(to: server.endpoint(ioTimeout: .seconds(1)))
        // Established: SFTP's INIT goes out with the first request, so one request has been answered before the
        // session stalls (otherwise, on a loaded machine, sshd may still be starting the session when stopped).
        _ = try await connection.attributes("/")
        let sessions = server.sshd.sessionProcessIDs()
        #expect(!sessions.isEmpty)
        for session in sessions { kill(session, SIGSTOP) }
        defer { for session in sessions { kill(session, SIGCONT) } }

        let started = ContinuousClock.now
        let error = await #expect(throws: SSHError.self) {
            try await connection.attributes("/data")
        }
        #expect(error?.code == .timeout)
        #expect(ContinuousClock.now - started < .seconds(5))
        // The connection is dropped, not left half-alive.
        let after = await #expect(throws: SSHError.self) { try await connection.listDirectory("/") }
        #expect(after != nil)
        await connection.close()
    }

    @Test func reportsAServerThatDiesMidSessionAsConnectionLost() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        try server.publish("manifest", [1])
        let connection = try await server.connect()
        for session in server.sshd.sessionProcessIDs() { kill(session, SIGKILL) }
        try await Task.sleep(for: .milliseconds(100))

        let started = ContinuousClock.now
        let error = await #expect(throws: SSHError.self) {
            try await connection.readFile("/data/manifest", limit: 10)
        }
        #expect(error?.code == .connectionLost)
        // Seen at once, not cut by the 30 s I/O timeout (the slack is for a loaded machine).
        #expect(ContinuousClock.now - started < .seconds(10))
        await connection.close()
    }

    @Test func cancellingTheTaskDropsAStalledConnection() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let connection = try await server.connect()
        let sessions = server.sshd.sessionProcessIDs()
        for session in sessions { kill(session, SIGSTOP) }
        defer { for session in sessions { kill(session, SIGCONT) } }

        let started = ContinuousClock.now
        let task = Task { try await connection.listDirectory("/") }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        let result = await task.result
        #expect(ContinuousClock.now - started < .seconds(5))
        guard case .failure(let error) = result else {
            Issue.record("the stalled call returned")
            return
        }
        #expect((error as? SSHError)?.code == .notConnected)
    }

    @Test func runsOperationsOnTwoConnectionsAtOnce() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let first = randomBytes(3 << 20)
        let second = randomBytes(2 << 20 + 7)
        try server.publish("first", first)
        try server.publish("second", second)
        let a = try await server.connect()
        let b = try await server.connect()

        async let downloadA: Void = a.download("/data/first", to: server.scratch.path("first"), limit: 8 << 20)
        async let downloadB: Void = b.download("/data/second", to: server.scratch.path("second"), limit: 8 << 20)
        async let readA = a.readFile("/data/second", limit: 8 << 20)
        async let readB = b.readFile("/data/first", limit: 8 << 20)
        try await downloadA
        try await downloadB
        #expect(try await readA == second)
        #expect(try await readB == first)
        #expect(try server.scratch.readFile("first") == first)
        #expect(try server.scratch.readFile("second") == second)

        // Many callers on one connection are served one after another.
        let sizes = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<8 {
                let path = index.isMultiple(of: 2) ? "/data/first" : "/data/second"
                group.addTask { try await a.readFile(path, limit: 8 << 20).count }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(sizes.sorted() == [Int](repeating: second.count, count: 4) + [Int](repeating: first.count, count: 4))
        await a.close()
        await b.close()
    }

    @Test func authenticatesWithoutSFTPAndRefusesUseAfterClose() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        try server.publish("manifest", [1, 2, 3])

        let bare = try await server.connect(openingSFTP: false)
        let noSFTP = await #expect(throws: SSHError.self) { try await bare.readFile("/data/manifest", limit: 10) }
        #expect(noSFTP?.code == .notConnected)
        await bare.close()

        let connection = try await server.connect()
        #expect(try await connection.readFile("/data/manifest", limit: 10) == [1, 2, 3])
        await connection.close()
        await connection.close()
        let closed = await #expect(throws: SSHError.self) { try await connection.readFile("/data/manifest", limit: 10) }
        #expect(closed?.code == .notConnected)
    }
}

/// Records progress reports from the connection's queue.
private final class ProgressLog: Sendable {
    private let values = Mutex<[Int64]>([])

    func record(_ value: Int64) { values.withLock { $0.append(value) } }
    var last: Int64? { values.withLock { $0.last } }
    var count: Int { values.withLock { $0.count } }
}

/// `ssh-keygen -lf` of a public key line, as the independent reference for fingerprints.
private func fingerprint(ofPublicKeyLine line: String) throws -> String {
    let directory = try TestDirectory.makeTemporary()
    defer { directory.remove() }
    try directory.writeFile("key.pub", text: line + "\n")
    let output = try TestCommand.check("/usr/bin/ssh-keygen", ["-l", "-E", "sha256", "-f", directory.path("key.pub")])
    return String(output.standardOutput.split(separator: " ")[1])
}

/// Any syntactically valid key, for endpoints that never get as far as checking it.
private func placeholderHostKey() throws -> String {
    let directory = try TestDirectory.makeTemporary()
    defer { directory.remove() }
    return try KeyPair.generate(at: directory.path("key")).publicKeyLine
}
