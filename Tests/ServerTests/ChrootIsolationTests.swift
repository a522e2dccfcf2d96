import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Publishing
import ServerSetup
import ServerStore
import Testing

/// Hosts served by a real sshd configured by `fleet setup` and `fleet sshd-config`, attacked with OpenSSH's
/// own clients.
@Suite("Chroot isolation with a real sshd", .serialized)
struct ChrootIsolationTests {
    /// A fleet of hosts a and b, set up and published, behind a running sshd. Removed by `stop()`.
    struct Server {
        let fixture: FleetFixture
        let sshd: TestSSHD
        let keys: [String: KeyPair]
        let prefix: String
        let knownHosts: String

        static func start() async throws -> Server {
            // A unique user prefix keeps these users apart from every other test's and the demo's.
            let prefix = "ft" + String(UUID().uuidString.lowercased().filter(\.isLetter).prefix(4)) + "-"
            let keyDirectory = try TestDirectory.makeTemporary()
            let keys = try Dictionary(
                uniqueKeysWithValues: ["a", "b"].map { host in
                    (host, try KeyPair.generate(at: keyDirectory.path(host), comment: "root@\(host)"))
                })
            let fixture = try FleetFixture(
                hosts: [], rootOwned: true, serverToml: "user_prefix = \"\(prefix)\"")
            for host in ["a", "b"] { try fixture.addHost(host) }
            try fixture.write("secrets/b/token", "TOKEN-OF-B\n")
            try fixture.write(
                "fleet.toml",
                try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                    + keys.sorted { $0.key < $1.key }.map { "[hosts.\($0.key)]\nkey = \"\($0.value.publicKeyLine)\"\n" }
                    .joined())
            var output = try await fixture.fleet(["setup"])
            guard output.exitCode == 0 else {
                throw TestSupportError("fleet setup failed: \(output.standardOutput)\(output.standardError)")
            }
            output = try await fixture.fleet(["publish"])
            guard output.exitCode == 0 else { throw TestSupportError("fleet publish failed: \(output.standardError)") }
            // The harness adds ListenAddress, HostKey and PidFile; everything else is fleet's own configuration.
            output = try await fixture.fleet([
                "sshd-config", "--listen-address", "127.0.0.1", "--port", "1", "--host-private-key", "/unused",
            ])
            let body = output.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix("ListenAddress") && !$0.hasPrefix("HostKey") && !$0.hasPrefix("PidFile") }
                .joined(separator: "\n")
            let sshd = try TestSSHD.start(configBody: body)
            let knownHosts = keyDirectory.path("known_hosts")
            try keyDirectory.writeFile("known_hosts", text: "[127.0.0.1]:\(sshd.port) \(sshd.hostPublicKey)\n")
            return Server(fixture: fixture, sshd: sshd, keys: keys, prefix: prefix, knownHosts: knownHosts)
        }

        func stop() {
            sshd.stop()
            for host in ["a", "b"] {
                _ = try? TestCommand.run("/usr/sbin/userdel", [prefix + host])
                _ = try? TestCommand.run("/usr/sbin/groupdel", [prefix + host])
            }
            fixture.remove()
            if let key = keys["a"] { TestDirectoryCleanup.removeParent(of: key.privateKeyPath) }
        }

        func sshOptions(key host: String) -> [String] {
            [
                "-i", keys[host]!.privateKeyPath, "-P", "\(sshd.port)", "-o", "BatchMode=yes", "-o",
                "UserKnownHostsFile=\(knownHosts)", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
            ]
        }

        /// Runs an sftp batch as `user` with `host`'s key; `-` before a command lets the batch go on after it fails.
        func sftp(as user: String, key host: String, _ batch: String) async throws -> CommandOutput {
            try await Command.run(
                "sftp", ["-b", "-"] + sshOptions(key: host) + ["\(prefix)\(user)@127.0.0.1"], input: batch)
        }

        func ssh(as user: String, _ arguments: [String]) async throws -> CommandOutput {
            try await Command.run(
                "ssh",
                [
                    "-p", "\(sshd.port)", "-i", keys[user]!.privateKeyPath, "-o", "BatchMode=yes", "-o",
                    "UserKnownHostsFile=\(knownHosts)", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
                ]
                    + arguments + ["\(prefix)\(user)@127.0.0.1"])
        }
    }

    @Test func eachHostSeesOnlyItsOwnChrootAndWritesOnlyItsLogs() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        let download = try TestDirectory.makeTemporary()
        defer { download.remove() }

        // A reads its own manifest and snapshot, and they verify.
        var output = try await server.sftp(
            as: "a", key: "a",
            """
            ls -1 /
            get /manifest \(download.path("manifest"))
            get /snapshots/1.tar.zst \(download.path("1.tar.zst"))
            """)
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("/manifest") && output.standardOutput.contains("/logs"))
        let manifest = try Manifest.verify(try download.readFile("manifest"), with: try server.fixture.verifyingKey())
        #expect(manifest.host.value == "a")
        #expect(SHA256Hasher.hex(try download.readFile("1.tar.zst")) == manifest.snapshot.sha256)

        // A cannot list or read B's chroot, by any path.
        for path in ["/../b/manifest", "../b/snapshots/1.tar.zst", "/../../../../etc/passwd", "/../b"] {
            output = try await server.sftp(as: "a", key: "a", "get \(path) \(download.path("stolen"))")
            #expect(output.exitCode != 0, "a fetched \(path)")
        }
        output = try await server.sftp(as: "a", key: "a", "ls /..\nls /../b")
        #expect(!output.standardOutput.contains("TOKEN") && !output.standardOutput.contains("/b/"))
        #expect(try FileStatus.of(download.path("stolen")) == nil)

        // A cannot write anywhere but logs/, nor plant links there.
        let before = try server.fixture.chrootListing().filter { !$0.contains("/logs") }
        for command in [
            "put /etc/hostname /manifest", "put /etc/hostname /snapshots/2.tar.zst", "put /etc/hostname /evil",
            "mkdir /cache/x", "rm /manifest", "rename /manifest /m2", "chmod 777 /manifest",
            "symlink /etc/shadow /logs/shadow", "symlink ../../b/snapshots /logs/peer", "ln /manifest /logs/hard",
            "chmod 777 /logs", "put /etc/hostname /logs/../../b/logs/x",
        ] {
            output = try await server.sftp(as: "a", key: "a", command)
            #expect(output.exitCode != 0, "a was allowed: \(command)")
        }
        #expect(try server.fixture.chrootListing().filter { !$0.contains("/logs") } == before)
        let logs = try server.fixture.layout("a").logs
        #expect(try FileIO.listDirectory(logs).isEmpty, "nothing was planted in logs/")

        // Plain upload and rename into logs/ work: that is how reports arrive.
        output = try await server.sftp(
            as: "a", key: "a", "put /etc/hostname /logs/report.tmp\nrename /logs/report.tmp /logs/report")
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(try FileIO.listDirectory(logs) == ["report"])
        #expect(try FileStatus.of(logs + "/report")?.kind == .regular)
    }

    @Test func noShellNoPTYNoForwardingAndKeysAreNotInterchangeable() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        var output = try await server.ssh(as: "a", [])
        #expect(output.exitCode != 0)
        output = try await server.ssh(as: "a", ["-T"])
        #expect(output.exitCode != 0)
        let marker = "/tmp/fleet-shell-\(UUID().uuidString)"
        output = try await Command.run(
            "ssh",
            [
                "-p", "\(server.sshd.port)", "-i", server.keys["a"]!.privateKeyPath, "-o", "BatchMode=yes", "-o",
                "UserKnownHostsFile=\(server.knownHosts)", "\(server.prefix)a@127.0.0.1", "touch \(marker); id",
            ])
        #expect(output.exitCode != 0)
        #expect(
            output.standardOutput.contains("sftp connections only")
                || output.standardError.contains("sftp connections only"))
        #expect(!output.standardOutput.contains("uid="))
        #expect(try FileStatus.of(marker) == nil)

        output = try await server.ssh(as: "a", ["-tt"])
        #expect(output.exitCode != 0)
        #expect(output.standardError.contains("PTY allocation request failed") || !output.standardOutput.contains("$"))

        // Port forwarding: -W asks sshd to open a TCP connection for us; it must refuse.
        output = try await server.ssh(as: "a", ["-W", "127.0.0.1:\(server.sshd.port)"])
        #expect(output.exitCode != 0)
        #expect(output.standardError.contains("prohibited") || output.standardError.contains("failed"))
        #expect(server.sshd.logText().contains("refused") || server.sshd.logText().contains("forward"))

        // B's key cannot log in as A, and the other way round.
        output = try await server.sftp(as: "a", key: "b", "ls /")
        #expect(output.exitCode != 0 && output.standardError.contains("Permission denied"))
        output = try await server.sftp(as: "b", key: "a", "ls /")
        #expect(output.exitCode != 0 && output.standardError.contains("Permission denied"))
        // B with its own key reads its secret-bearing snapshot: the setup is right, not just closed.
        output = try await server.sftp(as: "b", key: "b", "ls /snapshots")
        #expect(output.exitCode == 0 && output.standardOutput.contains("1.tar.zst"))
    }

    @Test func setupIsIdempotentAndRefusesUnsafeChrootParents() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        var output = try await server.fixture.fleet(["setup", "--json"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let report = try JSONDecoder().decode(ServerReport.self, from: Data(output.standardOutput.utf8))
        #expect(report.hosts.map(\.status) == ["unchanged", "unchanged"])
        let user = try #require(Accounts.user(named: server.prefix + "a"))
        #expect(user.shell == "/usr/sbin/nologin" && user.home == "/")
        // Not from Debian's system range, 100-999: a thousand hosts would exhaust it.
        #expect(ServerProvisioner.hostIDs.contains(Int(user.uid)) && ServerProvisioner.hostIDs.contains(Int(user.gid)))
        let layout = try server.fixture.layout("a")
        #expect(try FileStatus.of(layout.logs)?.owner == user.uid)
        #expect(try FileStatus.of(layout.snapshots)?.group == user.gid)
        #expect(try FileStatus.of(layout.snapshot(1))?.group == user.gid)
        let keyFile = try #require(
            try FileStatus.of(server.fixture.stateDirectory + "/authorized_keys/" + server.prefix + "a"))
        #expect(keyFile.owner == 0 && keyFile.permissions == 0o644)

        // A chroot root below /tmp (sticky, world-writable) is refused by name before anything is made.
        let unsafeRoot = "/tmp/fleet-unsafe-\(UUID().uuidString.lowercased())/chroot"
        output = try await server.fixture.fleet(["setup", "--chroot-root", unsafeRoot])
        #expect(output.exitCode != 0)
        #expect(output.standardError.contains("/tmp is writable by group or others"))
        #expect(try FileStatus.of(unsafeRoot) == nil)
    }

    /// sshd chroots each host user through `<state_dir>/chroots/<user>`: a link pointed elsewhere (at `/`) is put
    /// back by setup before anyone can log in through it, a stale one goes, and a directory in its place is refused.
    @Test func chrootLinksPointedElsewhereArePutBackAndStaleOnesRemoved() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        let links = server.fixture.stateDirectory + "/chroots/"
        let layout = try server.fixture.layout("a")
        #expect(try FileIO.readLink(links + server.prefix + "a") == layout.directory)
        try FileIO.replaceSymlink(links + server.prefix + "a", pointingTo: "/")
        try FileIO.replaceSymlink(links + server.prefix + "gone", pointingTo: "/")
        var output = try await server.fixture.fleet(["setup"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(try FileIO.readLink(links + server.prefix + "a") == layout.directory)
        #expect(try FileStatus.of(links + server.prefix + "gone") == nil)
        output = try await server.sftp(as: "a", key: "a", "ls /snapshots")
        #expect(output.exitCode == 0 && output.standardOutput.contains("1.tar.zst"), "\(output.standardError)")

        try FileIO.removeFile(links + server.prefix + "b")
        try FileIO.ensureDirectory(links + server.prefix + "b", mode: 0o755, owner: 0, group: 0)
        output = try await server.fixture.fleet(["setup"])
        #expect(output.exitCode != 0)
        #expect(
            (output.standardOutput + output.standardError).contains("cannot link \(links)\(server.prefix)b"),
            "\(output.standardOutput)\(output.standardError)")
        output = try await server.sftp(as: "b", key: "b", "ls /snapshots")
        #expect(output.exitCode != 0, "a directory that is not the chroot is never served")
        #expect(try FileStatus.of(layout.snapshot(1)) != nil, "nothing of a's chroot was lost")
    }

    @Test func eachHostsSFTPRequestsReachARealRsyslogThroughItsChroot() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        // Without sockets, setup says audit logging is off, naming the hosts and the fix.
        var output = try await server.fixture.fleet(["setup"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(
            output.standardOutput.contains(
                "warning: SFTP audit logging is off for a, b: no syslog socket at "
                    + (try server.fixture.layout("a").logSocket))
                && output.standardOutput.contains("fleet syslog-config >"), "\(output.standardOutput)")
        for host in ["a", "b"] {
            let dev = try #require(try FileStatus.of(try server.fixture.layout(host).dev))
            #expect(dev.kind == .directory && dev.owner == 0 && dev.permissions == 0o755)
        }

        // A real rsyslogd reading fleet's file as Debian's would from /etc/rsyslog.d, facility auth to a file.
        let work = try TestDirectory.makeTemporary()
        defer { work.remove() }
        output = try await server.fixture.fleet(["syslog-config"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        try work.writeFile("fleet-sftp.conf", text: output.standardOutput)
        try work.writeFile(
            "rsyslog.conf",
            text: """
                global(workDirectory="\(work.path)")
                module(load="imuxsock" SysSock.Use="off")
                $IncludeConfig \(work.path("fleet-sftp.conf"))
                auth.* action(type="omfile" file="\(work.path("auth.log"))")

                """)
        let rsyslog = try SpawnedProcess(
            ["/usr/sbin/rsyslogd", "-n", "-f", work.path("rsyslog.conf"), "-i", work.path("rsyslogd.pid")],
            logPath: work.path("rsyslogd.out"))
        defer { rsyslog.stop() }
        let sockets = try ["a", "b"].map { try server.fixture.layout($0).logSocket }
        let deadline = ContinuousClock.now + .seconds(20)
        while try !sockets.allSatisfy({ try FileStatus.of($0)?.isSocket == true }) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(try FileStatus.of(sockets[0])?.isSocket == true, "rsyslogd made no socket: \(rsyslog.log())")

        output = try await server.sftp(
            as: "a", key: "a",
            "get /manifest \(work.path("manifest"))\nput /etc/hostname /logs/report.tmp\n"
                + "rename /logs/report.tmp /logs/report")
        #expect(output.exitCode == 0, "\(output.standardError)")
        let wanted = [
            "session opened for local user \(server.prefix)a", "open \"/manifest\" flags READ",
            "\"/logs/report.tmp\" flags WRITE,CREATE,TRUNCATE", "old \"/logs/report.tmp\" new \"/logs/report\"",
        ]
        var log = ""
        while ContinuousClock.now < deadline + .seconds(10) {
            log = (try? String(contentsOfFile: work.path("auth.log"), encoding: .utf8)) ?? ""
            if wanted.allSatisfy(log.contains) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        for line in wanted { #expect(log.contains(line), "\(line) is not in auth.log:\n\(log)") }
        #expect(!log.contains("\(server.prefix)b"), "b made no request")

        // The sockets are there now: setup no longer warns.
        output = try await server.fixture.fleet(["setup"])
        #expect(output.exitCode == 0 && !output.standardOutput.contains("audit logging"), "\(output.standardOutput)")
    }

    /// `cat a.pub b.pub > two.pub` as a's key file (or the same inline) would give b's key a login as a, with
    /// a's snapshots and secrets: fleet refuses it by name and nothing already set up is changed.
    @Test func aKeyValueWithTwoKeysNeverLetsTheSecondKeyIn() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        let fixture = server.fixture
        let keyFile = fixture.stateDirectory + "/authorized_keys/" + server.prefix + "a"
        let installed = try FileIO.read(keyFile, limit: 1 << 16)
        let good = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        let a = server.keys["a"]!.publicKeyLine
        let b = server.keys["b"]!.publicKeyLine
        try fixture.write("keys/two.pub", a + "\n" + b + "\n")
        for hostile in [
            "key_file = \"keys/two.pub\"", "key = \"\(a)\\n\(b)\"", "key = \"\(a)\\nrestrict \(b)\"",
        ] {
            try fixture.write("fleet.toml", good.replacingOccurrences(of: "key = \"\(a)\"", with: hostile))
            for command in [["hosts"], ["setup"], ["sshd-config", "--listen", "127.0.0.1:1"]] {
                let output = try await fixture.fleet(command)
                #expect(output.exitCode != 0, "\(command) accepted \(hostile)")
                #expect(
                    output.standardError.contains("[hosts.a]") && output.standardError.contains("more than one line"),
                    "\(output.standardError)")
            }
            #expect(try FileIO.read(keyFile, limit: 1 << 16) == installed, "a's authorized keys were rewritten")
            let output = try await server.sftp(as: "a", key: "b", "ls /snapshots")
            #expect(output.exitCode != 0 && output.standardError.contains("Permission denied"))
            #expect(!output.standardOutput.contains("1.tar.zst"))
        }
        // The authorized keys file holds exactly one line, a's key, restricted.
        #expect(String(decoding: installed, as: UTF8.self) == "restrict \(try SSHPublicKey(a))\n")
        try fixture.write("fleet.toml", good)
        let output = try await server.sftp(as: "a", key: "a", "ls /snapshots")
        #expect(output.exitCode == 0 && output.standardOutput.contains("1.tar.zst"), "\(output.standardError)")
    }

    @Test func aChrootRootThatSSHDOrRsyslogWouldReadOtherwiseIsRefused() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        for root in ["/srv/fle\"et", "/srv/fleet\\x", "/srv/my fleet", "/srv/fleet\n#", "/srv/%u"] {
            let output = try await fixture.fleet(["syslog-config", "--chroot-root", root])
            #expect(output.exitCode != 0 && output.standardOutput.isEmpty, "\(root): \(output.standardOutput)")
            #expect(
                output.standardError.contains("--chroot-root") && output.standardError.contains("may hold only"),
                "\(output.standardError)")
        }
        let output = try await fixture.fleet(["syslog-config", "--chroot-root", "/srv/fleet"])
        #expect(output.standardOutput.contains("input(type=\"imuxsock\" Socket=\"/srv/fleet/a/dev/log\""))
    }

    struct ServerReport: Decodable {
        struct Host: Decodable { var status: String }
        var hosts: [Host]
    }
}
