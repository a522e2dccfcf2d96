import FleetTestSupport
import Foundation
import Glibc
import SFTPTransport
import Testing

/// A real sshd whose "SFTP server" is a script that lies: the client's own SFTP reading (small reads and
/// uploads, which bypass libssh's parser) must refuse each lie with a clear error, never hang, never take a
/// claimed length on trust, and never rename an upload whose writes failed.
@Suite(.serialized, .needsRootAndSSHD)
struct HostileSFTPServerTests {
    /// One sshd, one user whose ForceCommand is `script` (run through /bin/sh, as sshd does), and a file that
    /// says which lie the next session tells.
    struct Server {
        let root: TestDirectory
        let scratch: TestDirectory
        let user: TestUser
        let key: KeyPair
        let sshd: TestSSHD

        static func start() throws -> Server {
            let root = try TestDirectory.makeRootOwned()
            let scratch = try TestDirectory.makeTemporary()
            let user = try TestUser.create(prefix: "fhostile", shell: "/bin/sh")
            do {
                let key = try KeyPair.generate(at: scratch.path("client_key"), comment: "client")
                try root.makeDirectory("keys")
                try root.writeFile("keys/\(user.name)", text: key.publicKeyLine + "\n")
                try root.writeFile("liar.py", text: Self.script, mode: 0o644)
                try root.writeFile("mode", text: "honest\n", mode: 0o644)
                try root.makeDirectory("out", mode: 0o755, owner: user.uid, group: user.gid)
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
                            ForceCommand /usr/bin/python3 -u \(root.path("liar.py")) \(root.path("mode")) \(root.path("out/requests"))
                            PermitTTY no
                            DisableForwarding yes

                        """)
                return Server(root: root, scratch: scratch, user: user, key: key, sshd: sshd)
            } catch {
                user.remove()
                scratch.remove()
                root.remove()
                throw error
            }
        }

        func stop() {
            sshd.stop()
            user.remove()
            scratch.remove()
            root.remove()
        }

        /// Connects for a session that tells `lie`; a hang would show as `.timeout` after 30 s.
        func connect(telling lie: String) async throws -> SFTPConnection {
            try root.writeFile("mode", text: lie + "\n", mode: 0o644)
            unlink(root.path("out/requests"))
            return try await SFTPConnection.connect(
                to: SSHEndpoint(
                    host: "127.0.0.1", port: sshd.port, user: user.name, identityFile: key.privateKeyPath,
                    pinnedHostKey: sshd.hostPublicKey, connectTimeout: .seconds(10), ioTimeout: .seconds(30)))
        }

        /// The SFTP packet types the script received in the last session, in order.
        func requests() -> [String] {
            ((try? String(contentsOfFile: root.path("out/requests"), encoding: .utf8)) ?? "")
                .split(separator: "\n").map(String.init)
        }

        /// SFTP v3 on stdin/stdout, honest or telling the lie named in the mode file.
        static let script = #"""
            import struct, sys
            mode = open(sys.argv[1]).read().strip()
            log = open(sys.argv[2], "a")
            stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
            names = {1: "init", 3: "open", 4: "close", 5: "read", 6: "write", 8: "fstat", 200: "extended"}

            def exact(n):
                data = b""
                while len(data) < n:
                    chunk = stdin.read(n - len(data))
                    if not chunk:
                        sys.exit(0)
                    data += chunk
                return data

            def string(b):
                return struct.pack(">I", len(b)) + b

            def send(kind, payload):
                stdout.write(struct.pack(">IB", len(payload) + 1, kind) + payload)
                stdout.flush()

            def status(rid, code):
                send(101, struct.pack(">II", rid, code) + string(b"liar") + string(b""))

            while True:
                length, = struct.unpack(">I", exact(4))
                body = exact(length)
                kind = body[0]
                log.write(names.get(kind, str(kind)) + "\n")
                log.flush()
                if kind == 1:
                    send(2, struct.pack(">I", 3) + string(b"posix-rename@openssh.com") + string(b"1"))
                    continue
                rid, = struct.unpack(">I", body[1:5])
                if kind == 3:
                    send(102, struct.pack(">I", rid) + string(b"h" * (1000 if mode == "long-handle" else 4)))
                elif kind == 8:
                    if mode == "huge-size":
                        attributes = struct.pack(">IQI", 5, 1 << 40, 0o100644)
                    elif mode == "directory":
                        attributes = struct.pack(">IQI", 5, 4096, 0o040755)
                    elif mode == "cut-attributes":
                        attributes = struct.pack(">I", 5) + b"\0\0\0"
                    else:
                        attributes = struct.pack(">IQI", 5, 10, 0o100644)
                    send(105, struct.pack(">I", rid) + attributes)
                elif kind == 5:
                    if mode == "huge-reply":
                        stdout.write(struct.pack(">IBI", 0x7FFFFFFF, 103, rid))
                        stdout.flush()
                    elif mode == "stray-id":
                        send(103, struct.pack(">I", rid + 7) + string(b"0123456789"))
                    elif mode == "too-much":
                        send(103, struct.pack(">I", rid) + string(b"x" * 200000))
                    else:
                        send(103, struct.pack(">I", rid) + string(b"0123456789"))
                elif kind == 6:
                    status(rid, 4 if mode == "write-fails" else 0)
                else:
                    status(rid, 0)
            """#
    }

    @Test func eachLieIsRefusedWithAClearErrorAndNothingHangs() async throws {
        let server = try Server.start()
        defer { server.stop() }

        // The honest script works, so the refusals below are about the lies.
        var connection = try await server.connect(telling: "honest")
        #expect(try await connection.readFile("/manifest", limit: 1024) == Array("0123456789".utf8))
        #expect(server.requests() == ["init", "open", "fstat", "read", "close"])
        await connection.close()

        let lies: [(lie: String, code: SSHError.Code, says: String)] = [
            ("huge-size", .limitExceeded, "over the limit of 1024"),
            ("directory", .sftpFailure, "not a regular file"),
            ("cut-attributes", .sftpFailure, "attributes it cannot be read from"),
            ("long-handle", .sftpFailure, "a handle of 1000 bytes"),
            ("too-much", .sftpFailure, "200000 bytes where at most 1025 were asked for"),
            ("huge-reply", .connectionLost, "a reply of 2147483647 bytes"),
            ("stray-id", .connectionLost, "unexpected reply"),
        ]
        for (lie, code, says) in lies {
            connection = try await server.connect(telling: lie)
            let started = ContinuousClock.now
            let error = await #expect(throws: SSHError.self, "\(lie)") {
                try await connection.readFile("/manifest", limit: 1024)
            }
            #expect(error?.code == code, "\(lie): \(String(describing: error))")
            #expect(error?.description.contains(says) == true, "\(lie): \(String(describing: error))")
            // Refused by what it said, not cut by the 30 s I/O timeout (the slack is for a loaded machine).
            #expect(ContinuousClock.now - started < .seconds(20), "\(lie) was not refused at once")
            await connection.close()
        }
    }

    @Test func anUploadWhoseWritesFailIsNeverRenamedIntoPlace() async throws {
        let server = try Server.start()
        defer { server.stop() }
        var connection = try await server.connect(telling: "honest")
        try await connection.replaceFile("/logs/heartbeat.json", bytes: randomBytes(70_000), through: "/logs/.tmp")
        #expect(server.requests() == ["init", "open", "write", "write", "write", "close", "extended"])
        await connection.close()

        connection = try await server.connect(telling: "write-fails")
        let error = await #expect(throws: SSHError.self) {
            try await connection.replaceFile("/logs/heartbeat.json", bytes: randomBytes(70_000), through: "/logs/.tmp")
        }
        #expect(error?.code == .sftpFailure && error?.sftpStatus == 4, "\(String(describing: error))")
        #expect(server.requests() == ["init", "open", "write", "write", "write", "close"], "no rename was sent")
        // The session is still in step: the next request gets its own reply.
        #expect(try await connection.readFile("/manifest", limit: 1024) == Array("0123456789".utf8))
        await connection.close()
    }
}
