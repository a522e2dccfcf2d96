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

            fstats = 0
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
                    fstats += 1
                    if mode == "huge-size":
                        attributes = struct.pack(">IQI", 5, 1 << 40, 0o100644)
                    elif mode == "directory" or (mode == "third-is-directory" and fstats == 3):
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
                    elif mode == "eof":
                        status(rid, 1)
                    elif mode == "empty-data":
                        send(103, struct.pack(">I", rid) + string(b""))
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

    /// The batch calls hold every file to the same checks: each lie is refused with a clear error, no local file
    /// of the batch remains (not even those complete before the lie), and nothing hangs.
    @Test func theBatchCallsRefuseEachLieAndLeaveNoLocalFiles() async throws {
        let server = try Server.start()
        defer { server.stop() }
        let paths = ["/cache/a.narinfo", "/cache/b.narinfo", "/cache/c.narinfo", "/cache/d.narinfo"]
        let outDirectory = server.scratch.path("batch")
        try FileManager.default.createDirectory(atPath: outDirectory, withIntermediateDirectories: false)
        let downloads = paths.map {
            SFTPConnection.Download(
                remotePath: $0, localPath: outDirectory + "/" + ($0 as NSString).lastPathComponent, limit: 1024)
        }

        var connection = try await server.connect(telling: "honest")
        let read = try await connection.readFiles(paths, limit: 1024)
        #expect(read.count == 4 && read.values.allSatisfy { $0 == Array("0123456789".utf8) })
        let requests = server.requests()
        #expect(requests.filter { $0 == "open" }.count == 4 && requests.filter { $0 == "read" }.count == 4)
        #expect(requests.filter { $0 == "close" }.count == 4, "every handle is closed: \(requests)")
        #expect(try await connection.downloadFiles(downloads) == 40)
        for item in downloads {
            #expect(FileManager.default.contents(atPath: item.localPath) == Data("0123456789".utf8))
        }
        for item in downloads { unlink(item.localPath) }
        await connection.close()

        let lies: [(lie: String, code: SSHError.Code, says: String)] = [
            ("huge-size", .limitExceeded, "over the limit of 1024"),
            ("directory", .sftpFailure, "not a regular file"),
            ("third-is-directory", .sftpFailure, "not a regular file"),
            ("cut-attributes", .sftpFailure, "attributes it cannot be read from"),
            ("long-handle", .sftpFailure, "a handle of 1000 bytes"),
            ("too-much", .sftpFailure, "200000 bytes where at most 10 were asked for"),
            ("eof", .sftpFailure, "the file ended at byte 0, before its size of 10 bytes"),
            ("empty-data", .sftpFailure, "the file ended at byte 0, before its size of 10 bytes"),
            ("huge-reply", .connectionLost, "a reply of 2147483647 bytes"),
            ("stray-id", .connectionLost, "unexpected reply"),
        ]
        for (lie, code, says) in lies {
            for call in ["readFiles", "downloadFiles"] {
                connection = try await server.connect(telling: lie)
                let started = ContinuousClock.now
                let error = await #expect(throws: SSHError.self, "\(lie) \(call)") {
                    if call == "readFiles" {
                        _ = try await connection.readFiles(paths, limit: 1024)
                    } else {
                        _ = try await connection.downloadFiles(downloads)
                    }
                }
                #expect(error?.code == code, "\(lie) \(call): \(String(describing: error))")
                #expect(error?.description.contains(says) == true, "\(lie) \(call): \(String(describing: error))")
                #expect(ContinuousClock.now - started < .seconds(20), "\(lie) \(call) was not refused at once")
                #expect(try FileManager.default.contentsOfDirectory(atPath: outDirectory).isEmpty, "\(lie) \(call)")
                if code != .connectionLost {
                    // Every reply was read and the handles closed: libssh's next request gets its own reply.
                    try await connection.remove("/logs/x")
                    #expect(server.requests().last == "13", "\(lie) \(call): \(server.requests())")
                }
                await connection.close()
            }
        }
    }
}
