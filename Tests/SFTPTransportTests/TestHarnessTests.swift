import FleetTestSupport
import Foundation
import Glibc
import SFTPTransport
import Testing

/// The harness other suites build on: it must start what it says and leave nothing behind.
@Suite(.serialized, .needsRootAndSSHD)
struct TestHarnessTests {
    @Test func validatesConfigurations() throws {
        #expect(try TestSSHD.validate(configBody: "UsePAM no\nSubsystem sftp internal-sftp\n") == nil)
        let complaint = try #require(try TestSSHD.validate(configBody: "NoSuchKeyword yes\n"))
        #expect(complaint.contains("NoSuchKeyword"))
    }

    @Test func reportsAnSSHDThatCannotStartWithItsLog() throws {
        let error = #expect(throws: TestSupportError.self) {
            try TestSSHD.start(configBody: "NoSuchKeyword yes\n")
        }
        #expect(error?.description.contains("NoSuchKeyword") == true)
    }

    @Test func stopsSSHDAndItsSessionsByPID() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let connection = try await server.connect()
        let sessions = server.sshd.sessionProcessIDs()
        #expect(!sessions.isEmpty)
        #expect(LoopbackPort.isAccepting(server.sshd.port))

        server.sshd.stop()
        server.sshd.stop()  // idempotent
        #expect(kill(server.sshd.pid, 0) != 0)
        try await Task.sleep(for: .milliseconds(200))
        for session in sessions {
            #expect(!isRunning(session), "session \(session) survived")
        }
        #expect(!LoopbackPort.isAccepting(server.sshd.port))
        #expect(!FileManager.default.fileExists(atPath: server.sshd.configPath))
        await connection.close()
    }

    @Test func createsAndRemovesUsersSSHDAccepts() throws {
        let user = try TestUser.create(prefix: "fharness")
        var removed = false
        defer { if !removed { user.remove() } }
        #expect(user.name.count <= 32)
        #expect(user.name.hasPrefix("fharness-"))
        let entry = try #require(getpwnam(user.name))
        #expect(String(cString: entry.pointee.pw_dir) == "/")
        #expect(String(cString: entry.pointee.pw_shell) == "/usr/sbin/nologin")
        #expect(getgrgid(user.gid).map { String(cString: $0.pointee.gr_name) } == user.name)
        let shadow = String(decoding: FileManager.default.contents(atPath: "/etc/shadow") ?? Data(), as: UTF8.self)
        #expect(shadow.split(separator: "\n").contains { $0.hasPrefix("\(user.name):*:") })

        user.remove()
        removed = true
        #expect(getpwnam(user.name) == nil)
        #expect(getgrnam(user.name) == nil)
        #expect(throws: TestSupportError.self) { try TestUser.create(prefix: "9bad") }
    }

    @Test func makesRootOwnedDirectoriesOutsideTmp() throws {
        let directory = try TestDirectory.makeRootOwned()
        #expect(directory.path.hasPrefix(TestDirectory.rootOwnedBase + "/"))
        var status = stat()
        #expect(stat(directory.path, &status) == 0)
        #expect(status.st_uid == 0 && status.st_mode & 0o7777 == 0o755)
        try directory.makeDirectory("sub", mode: 0o750, owner: 65534, group: 65534)
        #expect(stat(directory.path("sub"), &status) == 0)
        #expect(status.st_uid == 65534 && status.st_mode & 0o7777 == 0o750)
        directory.remove()
        #expect(!FileManager.default.fileExists(atPath: directory.path))

        let temporary = try TestDirectory.makeTemporary()
        #expect(temporary.path.hasPrefix("/tmp/fleet-test-"))
        try temporary.writeFile("a", text: "x", mode: 0o600)
        #expect(try temporary.readFile("a") == Array("x".utf8))
        temporary.remove()
        #expect(!FileManager.default.fileExists(atPath: temporary.path))
    }

    @Test func generatesKeyPairs() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let key = try KeyPair.generate(at: directory.path("id"), comment: "someone@test")
        #expect(key.publicKeyLine.hasPrefix("ssh-ed25519 AAAA"))
        #expect(key.publicKeyLine.hasSuffix(" someone@test"))
        #expect(try key.fingerprint().hasPrefix("SHA256:"))
        // The transport computes the same fingerprint as ssh-keygen.
        let endpoint = SSHEndpoint(
            host: "127.0.0.1", user: "x", identityFile: key.privateKeyPath, pinnedHostKey: key.publicKeyLine)
        #expect(try endpoint.pinnedHostKeyFingerprint() == (try key.fingerprint()))
    }
}

/// Whether `pid` exists and has not exited (a zombie waiting for init to reap it counts as exited).
private func isRunning(_ pid: Int32) -> Bool {
    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else { return false }
    let text = String(decoding: data, as: UTF8.self)
    guard let close = text.lastIndex(of: ")") else { return false }
    let state = text[text.index(after: close)...].split(separator: " ").first
    return state != "Z" && state != "X"
}
