import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import Inventory
import Mirroring
import ServerStore
import Testing

/// A published fleet, and a mirror of it on this machine: a second chroot root reached by rsync over a real
/// SSH connection to a second sshd on 127.0.0.1 (root login by key only, no ForceCommand), with that sshd's
/// host key pinned in `[[mirrors]]`.
struct MirrorFixture {
    let fixture: FleetFixture
    let sshd: TestSSHD
    let user: TestUser
    /// The host whose Unix user (and group) exists here, so its snapshots belong to its group.
    let ownedHost: String
    let otherHost: String
    let pushKey: KeyPair
    var mirrorRoot: String { fixture.directory.path("mirror-root") }

    /// `extraMirrors` is appended to fleet.toml after mirror-a.
    init(extraMirrors: (TestSSHD, KeyPair) -> String = { _, _ in "" }) async throws {
        user = try TestUser.create(prefix: "mt")
        ownedHost = String(user.name.dropFirst("mt-".count))
        otherHost = "mirror-other-" + String(ownedHost.prefix(4))
        do {
            fixture = try FleetFixture(
                hosts: [ownedHost, otherHost], rootOwned: true, serverToml: "user_prefix = \"mt-\"")
            pushKey = try KeyPair.generate(at: fixture.directory.path("push_key"))
            try fixture.directory.writeFile("authorized_keys", text: pushKey.publicKeyLine + "\n", mode: 0o600)
            sshd = try TestSSHD.start(
                configBody: """
                    PermitRootLogin prohibit-password
                    PasswordAuthentication no
                    KbdInteractiveAuthentication no
                    PubkeyAuthentication yes
                    AuthorizedKeysFile \(fixture.directory.path("authorized_keys"))
                    AllowUsers root@127.0.0.1
                    UsePAM no

                    """)
        } catch {
            user.remove()
            throw error
        }
        try FileIO.ensureDirectory(mirrorRoot, mode: 0o755)
        let toml = String(decoding: try FileIO.read(fixture.repository + "/fleet.toml"), as: UTF8.self)
        try fixture.write(
            "fleet.toml",
            toml + Self.mirrorTable(name: "mirror-a", sshd: sshd, key: pushKey, root: mirrorRoot)
                + extraMirrors(sshd, pushKey))
        let published = try await fixture.fleet(["publish"])
        guard published.exitCode == 0 else {
            remove()
            throw TestSupportError("publish failed: \(published.standardOutput) \(published.standardError)")
        }
    }

    static func mirrorTable(
        name: String, sshd: TestSSHD, key: KeyPair, root: String, port: Int? = nil, hostKey: String? = nil
    ) -> String {
        """

        [[mirrors]]
        name = "\(name)"
        address = "127.0.0.1"
        port = \(port ?? sshd.port)
        host_key = "\(hostKey ?? sshd.hostPublicKey)"
        push_to = "root@127.0.0.1:\(root)"
        ssh_options = ["-p", "\(port ?? sshd.port)", "-i", "\(key.privateKeyPath)", "-oIdentitiesOnly=yes"]

        """
    }

    func remove() {
        sshd.stop()
        fixture.remove()
        user.remove()
    }

    func mirrorLayout(_ host: String) throws -> ChrootLayout {
        ChrootLayout(root: mirrorRoot, host: try HostName(host))
    }

    /// The mirror's manifest of `host`, verified, with its snapshot's size and SHA-256 checked.
    func mirrorManifest(_ host: String) throws -> Manifest {
        let layout = try mirrorLayout(host)
        let manifest = try Manifest.verify(try FileIO.readNoFollow(layout.manifest), with: try fixture.verifyingKey())
        let snapshot = try FileIO.read(layout.snapshot(manifest.generation))
        guard SHA256Hasher.hex(snapshot) == manifest.snapshot.sha256 else {
            throw TestSupportError("the mirror's snapshot of \(host) does not match its manifest")
        }
        return manifest
    }

    /// Makes `host`'s configuration change, so that the next publish gives it a new generation.
    func change(_ host: String, _ text: String) throws {
        try fixture.write("hosts/\(host)/extra.nix", "{ note = \"\(text)\"; }\n")
    }

    /// Creates a host's `logs/` on the mirror, as `fleet setup` there would (push never does).
    func mirrorLogs(_ host: String) throws -> String {
        let path = try mirrorLayout(host).logs
        try FileIO.createDirectories(try mirrorLayout(host).directory)
        try FileIO.ensureDirectory(path, mode: 0o700)
        return path
    }
}

@Suite("fleet mirror: push to and pull logs from mirrors over rsync and SSH", .serialized)
struct MirrorTests {
    struct Results: Decodable {
        var mirror: String
        var succeeded: Bool
        var error: String?
        var passes: [String]
    }

    @Test func pushCopiesSnapshotsAndManifestsWithTheirOwnersAndNeverTouchesTheMirrorsLogs() async throws {
        let mirror = try await MirrorFixture()
        defer { mirror.remove() }
        let logs = try mirror.mirrorLogs(mirror.ownedHost)
        try FileIO.writeAtomically(Array("uploaded on the mirror\n".utf8), to: logs + "/heartbeat.json", mode: 0o640)

        // A NAR in the pool, hard-linked into the host's cache/ as CachePool does it.
        let pool = ChrootLayout.cachePool(root: mirror.fixture.chrootRoot)
        try FileIO.createDirectories(pool + "/nar", mode: 0o700)
        try FileIO.writeAtomically(Array("a nar\n".utf8), to: pool + "/nar/abc.nar")
        let view = try mirror.fixture.layout(mirror.ownedHost).cache + "/nar"
        try FileIO.createDirectories(view)
        #expect(link(pool + "/nar/abc.nar", view + "/abc.nar") == 0)

        let pushed = try await mirror.fixture.fleet(["mirror", "push", "--json"])
        #expect(pushed.exitCode == 0, "\(pushed.standardOutput)\(pushed.standardError)")
        // The mirror keeps one file, linked from the pool and the host's view.
        let mirroredPool = try #require(
            try FileStatus.of(ChrootLayout.cachePool(root: mirror.mirrorRoot) + "/nar/abc.nar"))
        let mirroredView = try #require(
            try FileStatus.of(try mirror.mirrorLayout(mirror.ownedHost).cache + "/nar/abc.nar"))
        #expect(mirroredPool.inode == mirroredView.inode && mirroredPool.linkCount == 2)
        let results = try JSONDecoder().decode([Results].self, from: Data(pushed.standardOutput.utf8))
        #expect(results.map(\.mirror) == ["mirror-a"] && results[0].succeeded)
        #expect(results[0].passes == ["groups", "data", "manifests", "cleanup"])

        for host in [mirror.ownedHost, mirror.otherHost] {
            let here = try mirror.fixture.verifiedManifest(host)
            let there = try mirror.mirrorManifest(host)
            #expect(there == here)
            let layout = try mirror.fixture.layout(host)
            let copy = try mirror.mirrorLayout(host)
            for (original, mirrored) in [
                (layout.directory, copy.directory), (layout.manifest, copy.manifest),
                (layout.snapshots, copy.snapshots), (layout.snapshot(here.generation), copy.snapshot(here.generation)),
                (layout.cache, copy.cache),
            ] {
                let a = try #require(try FileStatus.of(original))
                let b = try #require(try FileStatus.of(mirrored), "\(mirrored) missing")
                #expect(
                    a.permissions == b.permissions && a.owner == b.owner && a.group == b.group,
                    "\(mirrored): \(String(b.permissions, radix: 8)) \(b.owner):\(b.group)")
            }
        }
        // Snapshots belong to the host's group on the mirror too (by name: the same user made by `fleet setup`).
        let snapshot = try mirror.mirrorLayout(mirror.ownedHost).snapshot(1)
        #expect(try FileStatus.of(snapshot)?.group == mirror.user.gid)
        #expect(try FileStatus.of(snapshot)?.permissions == 0o640)
        // What hosts uploaded to the mirror is untouched, and nothing of this server's logs/ went there.
        #expect(try FileIO.read(logs + "/heartbeat.json") == Array("uploaded on the mirror\n".utf8))
        #expect(try FileIO.listDirectory(logs) == ["heartbeat.json"])
        #expect(try FileIO.isExistingDirectory(try mirror.mirrorLayout(mirror.otherHost).logs) == false)

        // A new generation with `publish --mirrors`; a file the mirror has and this server does not is deleted,
        // except in logs/.
        try mirror.change(mirror.ownedHost, "two")
        let stray = try mirror.mirrorLayout(mirror.ownedHost).snapshots + "/999.tar.zst"
        try FileIO.writeAtomically([1, 2, 3], to: stray)
        let published = try await mirror.fixture.fleet(["publish", "--mirrors"])
        #expect(published.exitCode == 0, "\(published.standardOutput)\(published.standardError)")
        #expect(published.standardError.contains("mirror-a: pushed in"), "\(published.standardError)")
        #expect(try mirror.mirrorManifest(mirror.ownedHost).generation == 2)
        #expect(try FileStatus.of(stray) == nil)
        #expect(try FileIO.listDirectory(logs) == ["heartbeat.json"])
    }

    @Test func aPushStoppedAfterTheDataPassLeavesTheMirrorsManifestsAndTheirSnapshots() async throws {
        let mirror = try await MirrorFixture()
        defer { mirror.remove() }
        #expect(try await mirror.fixture.fleet(["mirror", "push"]).exitCode == 0)
        try mirror.change(mirror.otherHost, "two")
        #expect(try await mirror.fixture.fleet(["publish"]).exitCode == 0)
        #expect(try mirror.fixture.verifiedManifest(mirror.otherHost).generation == 2)

        let configuration = try mirror.fixture.configuration()
        let stopped = await MirrorPush(configuration: configuration, options: .init(stopAfter: .data))
            .push(configuration.mirrors)
        #expect(stopped.count == 1 && !stopped[0].succeeded && stopped[0].passes == ["groups", "data"])
        // The new snapshot is there, the manifest is still the old one, and the old snapshot is still there.
        let layout = try mirror.mirrorLayout(mirror.otherHost)
        #expect(try FileStatus.of(layout.snapshot(2))?.kind == .regular)
        #expect(try mirror.mirrorManifest(mirror.otherHost).generation == 1)

        let stoppedLater = await MirrorPush(configuration: configuration, options: .init(stopAfter: .manifests))
            .push(configuration.mirrors)
        #expect(stoppedLater[0].passes == ["groups", "data", "manifests"])
        #expect(try mirror.mirrorManifest(mirror.otherHost).generation == 2)

        let whole = try await mirror.fixture.fleet(["mirror", "push", "mirror-a"])
        #expect(whole.exitCode == 0 && whole.standardOutput.contains("mirror-a: pushed in"), "\(whole.standardOutput)")
        #expect(try mirror.mirrorManifest(mirror.otherHost).generation == 2)

        // [server] push_mirrors = true: a publish that changed something pushes, one that changed nothing does not.
        let toml = String(decoding: try FileIO.read(mirror.fixture.repository + "/fleet.toml"), as: UTF8.self)
        try mirror.fixture.write(
            "fleet.toml", toml.replacingOccurrences(of: "[server]\n", with: "[server]\npush_mirrors = true\n"))
        try mirror.change(mirror.otherHost, "three")
        let changed = try await mirror.fixture.fleet(["publish"])
        #expect(changed.exitCode == 0 && changed.standardError.contains("mirror-a: pushed in"), "\(changed)")
        #expect(try mirror.mirrorManifest(mirror.otherHost).generation == 3)
        let unchanged = try await mirror.fixture.fleet(["publish"])
        #expect(unchanged.exitCode == 0 && !unchanged.standardError.contains("mirror-a"), "\(unchanged)")
    }

    /// With `push_mirrors`, a rollout step that gives a ring its generation pushes as a publish does: the mirrors
    /// never serve a ring what the primary has not given it, nor lag behind it until the next publish.
    @Test func aPromotedRingReachesTheMirrorsWithPushMirrors() async throws {
        let mirror = try await MirrorFixture()
        defer { mirror.remove() }
        var toml = String(decoding: try FileIO.read(mirror.fixture.repository + "/fleet.toml"), as: UTF8.self)
        toml = toml.replacingOccurrences(of: "[server]\n", with: "[server]\npush_mirrors = true\n")
        toml += "\n[[rollout.rings]]\nname = \"canary\"\nhosts = [\"\(mirror.ownedHost)\"]\n"
        try mirror.fixture.write("fleet.toml", toml)
        try mirror.change(mirror.ownedHost, "two")
        try mirror.change(mirror.otherHost, "two")
        let published = try await mirror.fixture.fleet(["publish"])
        #expect(published.exitCode == 0 && published.standardError.contains("mirror-a: pushed in"), "\(published)")
        #expect(try mirror.mirrorManifest(mirror.ownedHost).generation == 2, "the canary ring has it at once")
        #expect(try mirror.mirrorManifest(mirror.otherHost).generation == 1, "staged for the rest ring")

        let step = try await mirror.fixture.fleet(["rollout", "promote", "rest"])
        #expect(step.exitCode == 0, "\(step.standardOutput)\(step.standardError)")
        #expect(step.standardError.contains("mirror-a: pushed in"), "\(step.standardError)")
        #expect(try mirror.fixture.verifiedManifest(mirror.otherHost).generation == 2)
        #expect(try mirror.mirrorManifest(mirror.otherHost).generation == 2)

        // A step that changes no chroot pushes nothing.
        let status = try await mirror.fixture.fleet(["rollout", "status"])
        #expect(status.exitCode == 0 && !status.standardError.contains("mirror-a"), "\(status.standardError)")
    }

    @Test func aMirrorLackingAHostsGroupIsNotPushedTo() async throws {
        let mirror = try await MirrorFixture()
        defer { mirror.remove() }
        // The mirror's group file, as if `fleet setup` had not run there: no group of the host's user.
        let groups = mirror.fixture.directory.path("mirror-group")
        try FileIO.writeAtomically(Array("root:x:0:\nmt-other:x:5000:\n".utf8), to: groups)
        let configuration = try mirror.fixture.configuration()
        let results = await MirrorPush(configuration: configuration, options: .init(groupFile: groups))
            .push(configuration.mirrors)
        #expect(results.count == 1 && !results[0].succeeded)
        let error = results[0].error ?? ""
        #expect(error.contains("mirror mirror-a lacks the Unix groups") && error.contains(mirror.user.name), "\(error)")
        #expect(error.contains("fleet setup --chroot-root \(mirror.mirrorRoot)"), "\(error)")
        #expect(try FileIO.listDirectory(mirror.mirrorRoot).isEmpty, "nothing was pushed")
    }

    @Test func anUnreachableMirrorOrOneWithAnotherHostKeyIsNamedAndTheOthersArePushed() async throws {
        let closed = try LoopbackPort.free()
        let mirror = try await MirrorFixture { sshd, key in
            MirrorFixture.mirrorTable(
                name: "mirror-down", sshd: sshd, key: key, root: "/var/lib/fleet-test/none", port: closed)
                // The push reaches mirror-a's sshd (ssh_options -p); hosts are given another port, as fleet.toml
                // refuses two mirrors at one address and port.
                + MirrorFixture.mirrorTable(
                    name: "mirror-spoof", sshd: sshd, key: key, root: "/var/lib/fleet-test/none",
                    hostKey: KeyPair.publicLine(forHost: "someone-else")
                ).replacingOccurrences(of: "port = \(sshd.port)\n", with: "port = 1\n")
        }
        defer { mirror.remove() }
        let output = try await mirror.fixture.fleet(["mirror", "push"])
        #expect(output.exitCode == 1)
        let lines = output.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("mirror-a: pushed in") }, "\(lines)")
        #expect(
            lines.contains { $0.hasPrefix("mirror-down: FAILED") && $0.contains("unreachable") }, "\(lines)")
        #expect(
            lines.contains {
                $0.hasPrefix("mirror-spoof: FAILED") && $0.contains("did not present the host_key")
            }, "\(lines)")
        #expect(try mirror.mirrorManifest(mirror.ownedHost).generation == 1)
        #expect(try FileStatus.of("/var/lib/fleet-test/none") == nil)

        // `fleet status --mirrors` still shows every host, names the mirrors it could not read, and exits 1.
        let status = try await mirror.fixture.fleet(["status", "--mirrors", "--json"])
        #expect(status.exitCode == 1)
        #expect(status.standardError.contains("mirror-down: FAILED"), "\(status.standardError)")
        #expect(status.standardOutput.contains("\"hosts\""))
    }

    @Test func pulledLogsReachTheStatusAndHostileOnesAreRefusedLikeUploadsHere() async throws {
        let mirror = try await MirrorFixture()
        defer { mirror.remove() }
        let owned = mirror.ownedHost
        let other = mirror.otherHost
        // This server's own state first: a report of `other` uploaded here and ingested.
        let here = mirror.fixture.chrootRoot + "/" + other + "/logs"
        try Self.plantReport(in: here, host: other, index: 0)
        #expect(try await mirror.fixture.fleet(["status"]).exitCode == 0)
        let listingHere = try FileIO.listDirectory(here).sorted()

        // On the mirror: a good heartbeat and report of `owned`; hostile files in `other`'s logs.
        let ownedLogs = try mirror.mirrorLogs(owned)
        try Self.plantReport(in: ownedLogs, host: owned, index: 1)
        let beat = Heartbeat(
            host: owned, at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1, failedGeneration: nil,
            lastResult: .unchanged, reason: nil, rebootNeeded: false)
        try FileIO.writeAtomically(beat.encoded(), to: ownedLogs + "/heartbeat.json", mode: 0o640)
        let otherLogs = try mirror.mirrorLogs(other)
        let linked = "report-\(ReviewFixture.stem(2))-g1.json"
        #expect(symlink("/etc/passwd", otherLogs + "/" + linked) == 0)
        let huge = "report-\(ReviewFixture.stem(3))-g1.json"
        try FileIO.writeAtomically(Array(repeating: UInt8(ascii: " "), count: 300 << 10), to: otherLogs + "/" + huge)
        // A report that names the other host, in this host's logs.
        let lying = try Self.plantReport(in: otherLogs, host: owned, index: 4, withLog: false)

        let pulled = try await mirror.fixture.fleet(["mirror", "pull-logs", "--json"])
        #expect(pulled.exitCode == 0, "\(pulled.standardOutput)\(pulled.standardError)")
        struct Output: Decodable {
            var mirrors: [Results]
            var ingest: IngestSummary
        }
        let output = try JSONDecoder().decode(Output.self, from: Data(pulled.standardOutput.utf8))
        #expect(output.mirrors.map(\.succeeded) == [true])
        #expect(output.ingest.reports == 1 && output.ingest.heartbeats == 1, "\(output.ingest)")
        #expect(output.ingest.refused >= 2, "\(output.ingest)")

        let statusOutput = try await mirror.fixture.fleet(["status", "--json"])
        struct Status: Decodable { var hosts: [HostStatus] }
        let rows = try JSONDecoder().decode(Status.self, from: Data(statusOutput.standardOutput.utf8)).hosts
        let ownedRow = try #require(rows.first { $0.host == owned })
        #expect(ownedRow.state == .upToDate && ownedRow.lastSeenVia == "mirror-a", "\(ownedRow)")
        let otherRow = try #require(rows.first { $0.host == other })
        let warnings = otherRow.warnings.joined(separator: "\n")
        for name in [linked, huge, lying] {
            #expect(warnings.contains("\(name) (on mirror mirror-a)"), "\(name): \(warnings)")
        }
        #expect(otherRow.lastSeenVia == nil, "seen here, not through the mirror")
        // This server's own uploads and what it ingested from them are still there.
        #expect(try FileIO.listDirectory(here).sorted() == listingHere)
        let logsHere = try await mirror.fixture.fleet(["logs", other, "--json"])
        #expect(logsHere.standardOutput.contains("report-\(ReviewFixture.stem(0))"), "\(logsHere.standardOutput)")
        // The symlink's target was never copied or read.
        let pulledLink =
            MirrorLogPull.pulledRoot(stateDirectory: mirror.fixture.stateDirectory, mirror: "mirror-a")
            + "/" + other + "/logs/" + linked
        #expect(try FileStatus.of(pulledLink)?.kind != .regular)

        // A second pull with nothing new reads nothing again; fewer than logs_keep, nothing is pruned.
        let again = try await mirror.fixture.fleet(["status", "--mirrors", "--json"])
        #expect(again.exitCode == 0, "\(again.standardError)")
        #expect(try FileIO.listDirectory(ownedLogs).count == 3)
    }

    @Test func pulledFilesOverTheLimitAreNamedWithTheirSizeAndNeitherCopiedNorIngested() async throws {
        let mirror = try await MirrorFixture()
        defer { mirror.remove() }
        let owned = mirror.ownedHost
        let logs = try mirror.mirrorLogs(owned)
        try Self.plantReport(in: logs, host: owned, index: 1)
        let limit = MirrorLogPull.largestFileBytes
        // Sparse files: one byte over the limit, and one exactly at it (which is pulled).
        func plant(_ name: String, size: Int) throws {
            let fd = open(logs + "/" + name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
            #expect(fd >= 0 && ftruncate(fd, off_t(size)) == 0)
            close(fd)
        }
        let over = "report-\(ReviewFixture.stem(2))-g1.json"
        try plant(over, size: limit + 1)
        let atLimit = "log-\(ReviewFixture.stem(3))-g1.txt"
        try plant(atLimit, size: limit)

        let pulled = try await mirror.fixture.fleet(["mirror", "pull-logs", "--json"])
        #expect(pulled.exitCode == 0, "\(pulled.standardOutput)\(pulled.standardError)")
        struct Pulled: Decodable {
            var mirror: String
            var succeeded: Bool
            var warnings: [String]
        }
        struct Output: Decodable {
            var mirrors: [Pulled]
            var ingest: IngestSummary
        }
        let output = try JSONDecoder().decode(Output.self, from: Data(pulled.standardOutput.utf8))
        let warnings = output.mirrors.first?.warnings ?? []
        #expect(output.mirrors.map(\.succeeded) == [true] && warnings.count == 1, "\(warnings)")
        let warning = warnings.first ?? ""
        for part in [
            "mirror mirror-a: host \(owned)'s file logs/\"\(over)\" is \(limit + 1) bytes",
            "over the \(limit) bytes (16 MiB) pull-logs copies: it was not pulled or ingested",
            "\(mirror.mirrorRoot)/\(owned)/logs/",
        ] {
            #expect(warning.contains(part), "\(part): \(warning)")
        }
        #expect(output.ingest.reports == 1, "\(output.ingest)")
        let pulledLogs =
            MirrorLogPull.pulledRoot(stateDirectory: mirror.fixture.stateDirectory, mirror: "mirror-a") + "/" + owned
            + "/logs/"
        #expect(try FileStatus.of(pulledLogs + over) == nil, "not copied")
        #expect(try FileStatus.of(pulledLogs + atLimit)?.size == Int64(limit), "the limit itself is pulled")
        #expect(try FileStatus.of(logs + "/" + over)?.size == Int64(limit + 1), "left on the mirror")

        // Said again on every pull, in the table's words too.
        let again = try await mirror.fixture.fleet(["mirror", "pull-logs"])
        #expect(again.exitCode == 0, "\(again.standardError)")
        #expect(
            again.standardOutput.contains("warning: mirror mirror-a: host \(owned)'s file logs/\"\(over)\""),
            "\(again.standardOutput)")
        let status = try await mirror.fixture.fleet(["status", "--mirrors"])
        #expect(
            status.standardError.contains("warning: mirror mirror-a: host \(owned)'s file"), "\(status.standardError)")
    }

    @Test func pullLogsDeletesOnTheMirrorWhatWasIngestedBeyondLogsKeep() async throws {
        let mirror = try await MirrorFixture()
        defer { mirror.remove() }
        let toml = String(decoding: try FileIO.read(mirror.fixture.repository + "/fleet.toml"), as: UTF8.self)
        try mirror.fixture.write(
            "fleet.toml", toml.replacingOccurrences(of: "[server]\n", with: "[server]\nlogs_keep = 2\n"))
        let owned = mirror.ownedHost
        let logs = try mirror.mirrorLogs(owned)
        for index in 1...4 { try Self.plantReport(in: logs, host: owned, index: index) }
        // Refused by the ingest: it stays, older than all of them.
        let refused = "report-\(ReviewFixture.stem(0))-g1.json"
        try FileIO.writeAtomically(Array("not a report".utf8), to: logs + "/" + refused)
        func kept(_ indices: [Int]) -> [String] {
            ([refused]
                + indices.flatMap {
                    ["log-\(ReviewFixture.stem($0))-g1.txt", "report-\(ReviewFixture.stem($0))-g1.json"]
                }).sorted()
        }
        struct Pulled: Decodable {
            var passes: [String]
            var pruned: Int
        }
        struct Output: Decodable {
            var mirrors: [Pulled]
            var ingest: IngestSummary
        }
        func pull() async throws -> Output {
            let pulled = try await mirror.fixture.fleet(["mirror", "pull-logs", "--json"])
            #expect(pulled.exitCode == 0, "\(pulled.standardOutput)\(pulled.standardError)")
            return try JSONDecoder().decode(Output.self, from: Data(pulled.standardOutput.utf8))
        }

        var output = try await pull()
        #expect(output.ingest.reports == 4 && output.ingest.refused == 1, "\(output.ingest)")
        #expect(output.mirrors.map(\.passes) == [["logs", "prune"]] && output.mirrors.map(\.pruned) == [4])
        #expect(try FileIO.listDirectory(logs).sorted() == kept([3, 4]))
        // The next pull drops the copies and deletes nothing more; the status keeps all four reports.
        output = try await pull()
        #expect(output.mirrors.map(\.pruned) == [0] && output.ingest.reports == 0, "\(output)")
        #expect(try FileIO.listDirectory(logs).sorted() == kept([3, 4]))
        let copy =
            MirrorLogPull.pulledRoot(stateDirectory: mirror.fixture.stateDirectory, mirror: "mirror-a") + "/" + owned
            + "/logs"
        #expect(try FileIO.listDirectory(copy).sorted() == kept([3, 4]))
        let history = try await mirror.fixture.fleet(["logs", owned, "--last", "10", "--json"])
        #expect(history.standardOutput.contains("report-\(ReviewFixture.stem(1))-g1.json"), "\(history.standardOutput)")

        try Self.plantReport(in: logs, host: owned, index: 5)
        let human = try await mirror.fixture.fleet(["mirror", "pull-logs"])
        #expect(
            human.standardOutput.contains("(deleted 2 old reports and logs there, beyond logs_keep)"),
            "\(human.standardOutput)")
        #expect(try FileIO.listDirectory(logs).sorted() == kept([4, 5]))
    }

    /// A report (and its log) as fleet-client writes it, into `directory`; returns the report's name.
    @discardableResult
    static func plantReport(in directory: String, host: String, index: Int, withLog: Bool = true) throws -> String {
        let stem = ReviewFixture.stem(index) + "-g1"
        var report = RunReport(
            host: host, state: .applied, startedAt: "2026-11-22T01:00:00Z", finishedAt: "2026-11-22T01:00:30Z")
        report.generation = 1
        report.durations.total = 30
        report.rebootNeeded = false
        if withLog {
            report.log = "log-\(stem).txt"
            try FileIO.writeAtomically(Array("log of run \(index)\n".utf8), to: directory + "/log-\(stem).txt")
        }
        let name = "report-\(stem).json"
        try FileIO.writeAtomically(report.encoded(), to: directory + "/" + name, mode: 0o640)
        return name
    }
}
