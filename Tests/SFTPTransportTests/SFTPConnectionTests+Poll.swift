import FleetTestSupport
import Foundation
import Glibc
import SFTPTransport
import Testing

/// The poll's read-while-writing call and the start of SFTP it shares its first round trip with, against a real
/// sshd: each half succeeds or fails on its own with the error of the single call, and a server that refuses
/// SFTP or ends it fails at once (by its answer, not the I/O timeout) with a clear error.
@Suite(.serialized, .needsRootAndSSHD)
struct PipelinedPollTests {
    static let beat = Array("{\"beat\":1}\n".utf8)

    @Test func readsOneFileAndWritesAnotherInTheSameRoundTrips() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let manifest = randomBytes(3000)
        try server.publish("manifest", manifest)
        let connection = try await server.connect()

        // The first call of the connection: its opens went out before the start's replies were read.
        var done = await connection.readFile(
            "/data/manifest", limit: 64 << 10, whileWriting: Self.beat, to: "/logs/.tmp-beat")
        #expect(try done.read.get() == manifest)
        #expect(done.writeError == nil)
        #expect(FileManager.default.contents(atPath: server.chroot + "/logs/.tmp-beat") == Data(Self.beat))
        // The extensions of the server's VERSION are known: posix-rename replaces an existing target.
        #expect(try await connection.supportsExtension("posix-rename@openssh.com", version: "1"))
        try await connection.rename(from: "/logs/.tmp-beat", to: "/logs/beat.json")
        let second = Array("{\"beat\":2}\n".utf8)
        done = await connection.readFile("/data/manifest", limit: 64 << 10, whileWriting: second, to: "/logs/.tmp-beat")
        #expect(try done.read.get() == manifest && done.writeError == nil)
        try await connection.rename(from: "/logs/.tmp-beat", to: "/logs/beat.json")
        #expect(FileManager.default.contents(atPath: server.chroot + "/logs/beat.json") == Data(second))
        #expect(FileManager.default.contents(atPath: server.chroot + "/logs/.tmp-beat") == nil)

        // Written in place over a longer file (a heartbeat slot): truncated first, no tail of the old one left.
        try server.root.writeFile(
            "chroot/logs/slot.json", Array(repeating: UInt8(ascii: "x"), count: 5000), mode: 0o640,
            owner: server.user.uid, group: server.user.gid)
        done = await connection.readFile(
            "/data/manifest", limit: 64 << 10, whileWriting: Self.beat, to: "/logs/slot.json")
        #expect(try done.read.get() == manifest && done.writeError == nil)
        #expect(FileManager.default.contents(atPath: server.chroot + "/logs/slot.json") == Data(Self.beat))

        // An empty file and a file of exactly the limit.
        try server.publish("empty", [])
        done = await connection.readFile("/data/empty", limit: 1024, whileWriting: [], to: "/logs/.tmp-empty")
        #expect(try done.read.get() == [] && done.writeError == nil)
        try server.publish("full", randomBytes(1024))
        done = await connection.readFile("/data/full", limit: 1024, whileWriting: Self.beat, to: "/logs/.tmp-full")
        #expect(try done.read.get().count == 1024)
        await connection.close()
    }

    @Test func eachHalfFailsOnItsOwnWithTheErrorOfTheSingleCall() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let connection = try await server.connect()

        // No such file: the read fails as readFile fails; the write is done.
        let missing = await #expect(throws: SSHError.self) {
            try await connection.readFile("/data/manifest", limit: 1024)
        }
        var done = await connection.readFile("/data/manifest", limit: 1024, whileWriting: Self.beat, to: "/logs/.tmp-a")
        #expect(Self.error(done.read)?.code == .noSuchFile)
        #expect(Self.error(done.read)?.description == missing?.description, "\(String(describing: done.read))")
        #expect(done.writeError == nil)

        // Over the limit: refused as readFile refuses it.
        try server.publish("manifest", randomBytes(2000))
        done = await connection.readFile("/data/manifest", limit: 1024, whileWriting: Self.beat, to: "/logs/.tmp-a")
        #expect(Self.error(done.read)?.code == .limitExceeded, "\(String(describing: done.read))")
        #expect(done.writeError == nil)

        // The temporary name is a directory: the write fails as writeFile fails, the read succeeds, and the file in
        // place (renamed from an earlier write) is untouched, since nothing is renamed.
        let small = randomBytes(500)
        try server.publish("manifest", small)
        try server.root.writeFile("chroot/logs/beat.json", text: "old", mode: 0o644)
        try server.root.makeDirectory(
            "chroot/logs/.tmp-dir", mode: 0o750, owner: server.user.uid, group: server.user.gid)
        let single = await #expect(throws: SSHError.self) {
            try await connection.writeFile("/logs/.tmp-dir", bytes: Self.beat)
        }
        done = await connection.readFile("/data/manifest", limit: 1024, whileWriting: Self.beat, to: "/logs/.tmp-dir")
        #expect(try done.read.get() == small)
        #expect(done.writeError?.code == .sftpFailure && done.writeError?.sftpStatus == 4)
        #expect(done.writeError?.description == single?.description, "\(String(describing: done.writeError))")
        #expect(done.writeError?.description.contains("Could not write /logs/.tmp-dir") == true)
        #expect(FileManager.default.contents(atPath: server.chroot + "/logs/beat.json") == Data("old".utf8))

        // A directory the user cannot write: permission denied.
        done = await connection.readFile("/data/manifest", limit: 1024, whileWriting: Self.beat, to: "/data/.tmp")
        #expect(try done.read.get() == small)
        #expect(done.writeError?.code == .permissionDenied, "\(String(describing: done.writeError))")

        // Both fail: each says its own path.
        done = await connection.readFile("/data/nothing", limit: 1024, whileWriting: Self.beat, to: "/nowhere/.tmp")
        #expect(Self.error(done.read)?.path == "/data/nothing" && done.writeError?.path == "/nowhere/.tmp")
        #expect(done.writeError?.code == .noSuchFile)
        // The session is still in step.
        #expect(try await connection.readFile("/data/manifest", limit: 1024) == small)
        await connection.close()
    }

    /// Two sshds: one without an sftp subsystem (the request is refused), one whose subsystem accepts the request
    /// and exits at once (the channel closes).
    @Test func aServerWithoutSFTPFailsAtOnceWithAClearError() async throws {
        let root = try TestDirectory.makeRootOwned()
        defer { root.remove() }
        let scratch = try TestDirectory.makeTemporary()
        defer { scratch.remove() }
        let user = try TestUser.create(prefix: "fnosftp", shell: "/bin/sh")
        defer { user.remove() }
        let key = try KeyPair.generate(at: scratch.path("client_key"), comment: "client")
        try root.makeDirectory("keys")
        try root.writeFile("keys/\(user.name)", text: key.publicKeyLine + "\n")
        func config(_ subsystem: String) -> String {
            """
            UsePAM no
            PubkeyAuthentication yes
            PasswordAuthentication no
            AuthenticationMethods publickey
            AuthorizedKeysFile \(root.path("keys"))/%u
            AllowUsers \(user.name)
            \(subsystem)

            """
        }
        let without = try TestSSHD.start(configBody: config("# no Subsystem line"))
        defer { without.stop() }
        let quitting = try TestSSHD.start(configBody: config("Subsystem sftp /bin/true"))
        defer { quitting.stop() }
        func endpoint(_ sshd: TestSSHD) -> SSHEndpoint {
            // Long enough that a wait for the timeout would show as .timeout, not as the refusal.
            SSHEndpoint(
                host: "127.0.0.1", port: sshd.port, user: user.name, identityFile: key.privateKeyPath,
                pinnedHostKey: sshd.hostPublicKey, connectTimeout: .seconds(10), ioTimeout: .seconds(60))
        }

        // Refused: the connect fails at once (by the server's answer: a wait would end as .timeout after 60 s).
        let refused = await #expect(throws: SSHError.self) { try await SFTPConnection.connect(to: endpoint(without)) }
        #expect(refused?.code == .connectionLost, "\(String(describing: refused))")
        #expect(refused?.operation == "start SFTP")
        #expect(refused?.description.contains("refused to start its sftp subsystem") == true)

        // Accepted, then gone: the first call fails (on writing or on reading, whichever meets the close first),
        // and every later call says the same.
        let connection = try await SFTPConnection.connect(to: endpoint(quitting))
        let done = await connection.readFile("/manifest", limit: 1024, whileWriting: Self.beat, to: "/.tmp")
        let closed = Self.error(done.read)
        #expect(closed?.code == .connectionLost, "\(String(describing: closed))")
        #expect(closed?.operation == "start SFTP")
        #expect(closed?.description.contains("closed") == true, "\(String(describing: closed))")
        #expect(done.writeError?.description == closed?.description)
        let again = await #expect(throws: SSHError.self) { try await connection.attributes("/manifest") }
        #expect(again?.description == closed?.description)
        await connection.close()
    }

    /// A server whose answer to `INIT` lies (another version, a cut extension list, not a `VERSION` at all) fails
    /// the first call with a clear error, and every later call the same way.
    @Test func aLyingVersionIsRefusedWithAClearError() async throws {
        let root = try TestDirectory.makeRootOwned()
        defer { root.remove() }
        let scratch = try TestDirectory.makeTemporary()
        defer { scratch.remove() }
        let user = try TestUser.create(prefix: "fversion", shell: "/bin/sh")
        defer { user.remove() }
        let key = try KeyPair.generate(at: scratch.path("client_key"), comment: "client")
        try root.makeDirectory("keys")
        try root.writeFile("keys/\(user.name)", text: key.publicKeyLine + "\n")
        try root.writeFile("liar.py", text: Self.versionLiar, mode: 0o644)
        try root.writeFile("mode", text: "v4\n", mode: 0o644)
        let sshd = try TestSSHD.start(
            configBody: """
                UsePAM no
                PubkeyAuthentication yes
                PasswordAuthentication no
                AuthenticationMethods publickey
                AuthorizedKeysFile \(root.path("keys"))/%u
                AllowUsers \(user.name)
                Subsystem sftp internal-sftp
                Match User \(user.name)
                    ForceCommand /usr/bin/python3 -u \(root.path("liar.py")) \(root.path("mode"))
                    PermitTTY no
                    DisableForwarding yes

                """)
        defer { sshd.stop() }
        let endpoint = SSHEndpoint(
            host: "127.0.0.1", port: sshd.port, user: user.name, identityFile: key.privateKeyPath,
            pinnedHostKey: sshd.hostPublicKey, connectTimeout: .seconds(10), ioTimeout: .seconds(60))

        let lies: [(mode: String, code: SSHError.Code, says: String)] = [
            ("v4", .sftpFailure, "the server speaks SFTP version 4, and this client only version 3"),
            ("cut", .connectionLost, "the server's VERSION is cut short"),
            ("status", .connectionLost, "did not answer SFTP's INIT with its VERSION"),
        ]
        for (mode, code, says) in lies {
            try root.writeFile("mode", text: mode + "\n", mode: 0o644)
            let connection = try await SFTPConnection.connect(to: endpoint)
            let done = await connection.readFile("/manifest", limit: 1024, whileWriting: Self.beat, to: "/.tmp")
            let refused = Self.error(done.read)
            #expect(
                refused?.code == code && refused?.operation == "start SFTP", "\(mode): \(String(describing: refused))")
            #expect(refused?.description.contains(says) == true, "\(mode): \(String(describing: refused))")
            #expect(done.writeError?.description == refused?.description)
            // libssh's own calls wait for the start too, and report the same.
            let again = await #expect(throws: SSHError.self) { try await connection.attributes("/manifest") }
            #expect(again?.description == refused?.description, "\(mode)")
            await connection.close()
        }
    }

    /// Answers `INIT` as the mode file says, then reads on until the client goes.
    static let versionLiar = #"""
        import struct, sys
        mode = open(sys.argv[1]).read().strip()
        stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
        length, = struct.unpack(">I", stdin.read(4))
        stdin.read(length)
        def string(b):
            return struct.pack(">I", len(b)) + b
        if mode == "v4":
            payload = struct.pack(">BI", 2, 4)
        elif mode == "cut":
            payload = struct.pack(">BI", 2, 3) + string(b"posix-rename@openssh.com")
        else:
            payload = struct.pack(">BII", 101, 0, 4) + string(b"no") + string(b"")
        stdout.write(struct.pack(">I", len(payload)) + payload)
        stdout.flush()
        while stdin.read(4096):
            pass
        """#

    static func error(_ result: Result<[UInt8], SSHError>) -> SSHError? {
        if case .failure(let error) = result { return error }
        return nil
    }
}
