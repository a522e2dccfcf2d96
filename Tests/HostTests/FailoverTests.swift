import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Publishing
import ServerStore
import Testing

/// Failover across client.toml's servers, with real sshd instances on 127.0.0.1, each serving its own copy of the
/// chroot root (a mirror, as rsync would leave it) under a host key of its own, and the real client: a primary
/// that is down, a mirror with an older generation, one with an expired manifest and one with the wrong host key
/// are each passed over, the run says which server served it and which it skipped and why, and its uploads go to
/// the server that served it.
@Suite("Failover across servers", .serialized)
struct FailoverTests: ClientRunSuite {
    static var stale: Int32 { RunOutcome.stale.exitStatus }

    @Test func withThePrimaryDownTheHostAppliesFromAMirrorAndReportsToIt() async throws {
        let host = "fo-down"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        let mirror = try await MirrorServer.start(copying: fleet)
        defer { mirror.stop() }
        let primaryUploads = try fleet.uploaded(host)
        try Self.takeThePrimaryDown(fleet, host)
        try Self.addMirrors(fleet, host, [("mirror-a", mirror.sshd.port, mirror.sshd.hostPublicKey)])

        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(output.standardError.contains("served by mirror mirror-a"), "\(output.standardError)")
        let manifest = try fleet.manifest(host)
        #expect(try fleet.state(host).applied?.generation == manifest.generation)
        #expect(try fleet.state(host).lastServer == "mirror-a")
        #expect(!fleet.activations(host).isEmpty)

        // The report, the log and the confirmation went to the mirror; the primary got nothing.
        let report = try #require(try mirror.lastReport(host))
        #expect(report.state == .applied && report.server == "mirror-a")
        let skipped = try #require(report.skippedServers)
        #expect(skipped.map(\.name) == ["primary"] && skipped[0].reason.hasPrefix("unreachable"), "\(skipped)")
        #expect(try mirror.uploaded(host).contains(UploadName.confirmationName))
        #expect(try fleet.uploaded(host) == primaryUploads)

        let check = try await fleet.client(host, ["check"])
        #expect(check.exitCode == 0, "\(check.standardError)")
        #expect(
            check.standardError.contains("[server: mirror-a (")
                && check.standardError.contains("[passed over: primary: unreachable"),
            "\(check.standardError)")
        let status = try await fleet.client(host, ["status"])
        #expect(status.standardOutput.contains("served by mirror-a"), "\(status.standardOutput)")

        // The primary is back: it serves again, and the heartbeat says so, with nothing skipped.
        try Self.bringThePrimaryBack(fleet, host)
        #expect(try await fleet.client(host).exitCode == Self.unchanged)
        let beat = try Self.heartbeat(try fleet.layout(host).logs)
        #expect(beat.server == "primary" && beat.skippedServers == nil, "\(beat)")
        #expect(try fleet.state(host).lastServer == "primary")
    }

    @Test func aMirrorWithAnOlderGenerationIsSkippedLikeADowngrade() async throws {
        let host = "fo-older"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        #expect(try await fleet.client(host).exitCode == Self.applied)
        let old = try await MirrorServer.start(copying: fleet)
        defer { old.stop() }
        try fleet.fixture.write("hosts/\(host)/configuration.nix", "{ motd = [ \"second\" ]; }\n")
        try await fleet.publish()
        let second = try fleet.manifest(host).generation
        #expect(try await fleet.client(host).exitCode == Self.applied)
        let current = try await MirrorServer.start(copying: fleet)
        defer { current.stop() }
        let activations = fleet.activations(host)

        try Self.takeThePrimaryDown(fleet, host)
        try Self.addMirrors(
            fleet, host,
            [
                ("old", old.sshd.port, old.sshd.hostPublicKey),
                ("current", current.sshd.port, current.sshd.hostPublicKey),
            ]
        )
        let oldUploads = try old.uploaded(host)
        var output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(fleet.activations(host) == activations, "nothing applied: generation \(second) is")
        #expect(try fleet.state(host).lastSeen?.generation == second)
        let beat = try Self.heartbeat(try current.logs(host))
        #expect(beat.server == "current", "\(beat)")
        let skipped = try #require(beat.skippedServers)
        #expect(skipped.map(\.name) == ["primary", "old"], "\(skipped)")
        #expect(skipped[1].reason.contains("lower than generation \(second) already seen"), "\(skipped)")
        // The draft written ahead into one of its heartbeat slots was removed again once the mirror was passed over.
        let notHeartbeats = { (names: [String]) in names.filter { UploadName($0) != .heartbeat } }
        #expect(try notHeartbeats(old.uploaded(host)) == notHeartbeats(oldUploads), "nothing was uploaded to it")
        #expect((try? HeartbeatFiles.heartbeat(in: old.logs(host)))?.server != "old", "no heartbeat of this run")

        // Only the old mirror left: no server serves a usable manifest, so the outcome is today's downgrade
        // refusal, reported to the mirror that served it; the host keeps what it runs.
        try Self.takeAMirrorDown(fleet, host, port: current.sshd.port)
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.refused, "\(output.standardError)")
        #expect(output.standardError.contains("a downgrade or a replayed old manifest"), "\(output.standardError)")
        #expect(fleet.activations(host) == activations)
        #expect(try fleet.state(host).lastSeen?.generation == second)
        let report = try #require(try old.lastReport(host))
        #expect(report.state == .refused && report.server == "old", "\(report)")
        #expect(
            report.skippedServers?.map(\.name) == ["primary", "current"], "\(String(describing: report.skippedServers))"
        )
    }

    @Test func aMirrorWithAnExpiredManifestIsSkippedAndTheNextOneServes() async throws {
        let host = "fo-expired"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        #expect(try await fleet.client(host).exitCode == Self.applied)
        let mirrors = try await Self.frozenAndFreshMirrors(fleet, host)
        defer { mirrors.stop() }
        let (frozen, fresh) = (mirrors.frozen, mirrors.fresh)
        let activations = fleet.activations(host)

        try mirrors.failOver(fleet, host)
        var output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(output.standardError.contains("frozen is skipped for this run"), "\(output.standardError)")
        let beat = try Self.heartbeat(try fresh.logs(host))
        #expect(beat.server == "fresh" && beat.lastResult == .unchanged, "\(beat)")
        let skipped = try #require(beat.skippedServers)
        #expect(skipped.map(\.name) == ["primary", "frozen"], "\(skipped)")
        #expect(skipped[1].reason.hasPrefix("stale manifest:") && skipped[1].reason.contains("expired at"))
        #expect(skipped.allSatisfy { $0.reason.count <= 200 })

        // The fresh mirror gone too: the frozen one's manifest is all there is, and the outcome is stale.
        try Self.takeAMirrorDown(fleet, host, port: fresh.sshd.port)
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.stale, "\(output.standardError)")
        #expect(output.standardError.contains("(server 127.0.0.1 port \(frozen.sshd.port))"), "\(output.standardError)")
        #expect(fleet.activations(host) == activations)
        #expect(try frozen.lastReport(host)?.state == .stale)
    }

    @Test func aServerWhoseSnapshotDoesNotMatchItsManifestIsPassedOverForAMirrorServingItIntact() async throws {
        let host = "fo-badsnap"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        #expect(try await fleet.client(host).exitCode == Self.applied)
        try fleet.fixture.write("hosts/\(host)/configuration.nix", "{ motd = [ \"second\" ]; }\n")
        try await fleet.publish()
        let manifest = try fleet.manifest(host)
        let mirror = try await MirrorServer.start(copying: fleet)
        defer { mirror.stop() }
        try Self.addMirrors(fleet, host, [("mirror-a", mirror.sshd.port, mirror.sshd.hostPublicKey)])
        // The primary's snapshot of the new generation is damaged in place: same size, one byte flipped.
        let snapshot = try fleet.layout(host).directory + manifest.snapshot.path
        var bytes = try FileIO.read(snapshot)
        bytes[bytes.count / 2] ^= 0xFF
        try fleet.plant(host, manifest.snapshot.path, bytes)
        let primaryUploads = try fleet.uploaded(host)

        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(output.standardError.contains("primary is skipped for this run"), "\(output.standardError)")
        #expect(try fleet.state(host).applied?.generation == manifest.generation)
        let report = try #require(try mirror.lastReport(host))
        #expect(report.state == .applied && report.server == "mirror-a", "\(report)")
        let skipped = try #require(report.skippedServers)
        #expect(skipped.map(\.name) == ["primary"], "\(skipped)")
        #expect(
            skipped[0].reason.hasPrefix(
                "snapshot of generation \(manifest.generation) unusable: the snapshot's sha256"),
            "\(skipped)")
        // The primary got nothing of this run: no report, no log, no heartbeat.
        let notHeartbeats = { (names: [String]) in names.filter { UploadName($0) != .heartbeat } }
        #expect(try notHeartbeats(fleet.uploaded(host)) == notHeartbeats(primaryUploads))

        // With no other server to try, the damaged snapshot is refused and reported to the primary, as before.
        try fleet.editClientConfiguration(host) { text in
            String(text[..<(text.range(of: "\n[[servers]]")?.lowerBound ?? text.endIndex)]) + "\n"
        }
        try fleet.fixture.write("hosts/\(host)/configuration.nix", "{ motd = [ \"third\" ]; }\n")
        try await fleet.publish()
        let third = try fleet.manifest(host)
        var damaged = try FileIO.read(try fleet.layout(host).directory + third.snapshot.path)
        damaged[damaged.count / 2] ^= 0xFF
        try fleet.plant(host, third.snapshot.path, damaged)
        let refused = try await fleet.client(host)
        #expect(refused.exitCode == RunOutcome.refused.exitStatus, "\(refused.standardError)")
        #expect(try fleet.lastReport(host)?.state == .refused)
        #expect(try fleet.state(host).applied?.generation == manifest.generation)
    }

    @Test func aMirrorWithTheWrongHostKeyIsSkippedNeverTrustedAndNamed() async throws {
        let host = "fo-hostkey"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        let impostor = try await MirrorServer.start(copying: fleet)
        defer { impostor.stop() }
        let honest = try await MirrorServer.start(copying: fleet)
        defer { honest.stop() }
        let stranger = try KeyPair.generate(at: fleet.clients.path("stranger"), comment: "stranger", type: "ed25519")

        try Self.takeThePrimaryDown(fleet, host)
        // The impostor serves the same files, but not under the key pinned for it.
        try Self.addMirrors(
            fleet, host,
            [
                ("impostor", impostor.sshd.port, stranger.publicKeyLine),
                ("honest", honest.sshd.port, honest.sshd.hostPublicKey),
            ]
        )
        var output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        let report = try #require(try honest.lastReport(host))
        #expect(report.server == "honest")
        let skipped = try #require(report.skippedServers)
        #expect(skipped.map(\.name) == ["primary", "impostor"], "\(skipped)")
        #expect(skipped[1].reason.hasPrefix("wrong host key, not trusted"), "\(skipped)")
        #expect(try impostor.uploaded(host).isEmpty, "nothing was sent to it")
        #expect(!impostor.sshd.logText().contains("Accepted publickey"), "the client never authenticated to it")

        // No other server: the run is refused (not merely unreachable), naming the impostor, and nothing changed.
        let activations = fleet.activations(host)
        try Self.takeAMirrorDown(fleet, host, port: honest.sshd.port)
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.refused, "\(output.standardError)")
        #expect(output.standardError.contains("impostor: wrong host key"), "\(output.standardError)")
        #expect(!output.standardError.contains("attempt 2"), "trying again cannot change a host key")
        #expect(fleet.activations(host) == activations)
    }

    @Test func aSwitchIsConfirmedByAnotherServerWhenTheOneThatServedItStopsAnswering() async throws {
        let host = "fo-confirm"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        let mirror = try await MirrorServer.start(copying: fleet)
        defer { mirror.stop() }
        try Self.addMirrors(fleet, host, [("mirror-a", mirror.sshd.port, mirror.sshd.hostPublicKey)])
        // The primary hangs (its connections time out), so the mirror serves; the activation then stops the
        // mirror and wakes the primary: only the primary can confirm within the window.
        try fleet.clients.writeFile(
            "failover-hook.sh",
            text: """
                #!/bin/sh
                [ "$1" = test ] || exit 0
                kill -STOP \(mirror.sshd.pid)
                kill -CONT \(fleet.sshd.pid)
                exit 0

                """, mode: 0o755)
        kill(fleet.sshd.pid, SIGSTOP)
        defer { kill(fleet.sshd.pid, SIGCONT) }
        let output = try await fleet.client(
            host, environment: ["FLEET_ACTIVATION_HOOK": fleet.clients.path("failover-hook.sh")])
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(output.standardError.contains("served by mirror mirror-a"), "\(output.standardError)")
        #expect(
            output.standardError.contains("reached 127.0.0.1:\(fleet.sshd.port) instead"), "\(output.standardError)")
        #expect(try fleet.uploaded(host).contains(UploadName.confirmationName))
        #expect(try !mirror.uploaded(host).contains(UploadName.confirmationName))
        #expect(try fleet.state(host).applied?.generation == (try fleet.manifest(host).generation))
    }

    @Test func theOutboxGoesOnlyToTheServerThatIsAcceptedNeverToOneSkipped() async throws {
        let host = "fo-outbox"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        #expect(try await fleet.client(host).exitCode == Self.applied)
        let mirrors = try await Self.frozenAndFreshMirrors(fleet, host)
        defer { mirrors.stop() }
        let (frozen, fresh) = (mirrors.frozen, mirrors.fresh)
        // What an earlier run could not upload, waiting for the next contact.
        let outbox = fleet.stateDirectory(host) + "/outbox"
        try FileIO.ensureDirectory(outbox, mode: 0o700)
        let stem = "20261122T010000000Z-g1"
        var kept = RunReport(
            host: host, state: .failed, startedAt: "2026-11-22T01:00:00Z", finishedAt: "2026-11-22T01:00:30Z")
        kept.generation = 1
        kept.reason = "kept in the outbox"
        kept.log = "log-\(stem).txt"
        try FileIO.writeAtomically(Array("a log kept\n".utf8), to: outbox + "/log-\(stem).txt", mode: 0o600)
        try FileIO.writeAtomically(kept.encoded(), to: outbox + "/report-\(stem).json", mode: 0o600)

        try mirrors.failOver(fleet, host)
        let frozenUploads = try frozen.uploaded(host)
        let freshUploads = try fresh.uploaded(host)
        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(output.standardError.contains("frozen is skipped for this run"), "\(output.standardError)")
        // The frozen mirror was reached first and passed over: it got nothing, the kept report included.
        #expect(try frozen.uploaded(host) == frozenUploads)
        let arrived = Set(try fresh.uploaded(host)).subtracting(freshUploads)
        #expect(arrived.isSuperset(of: ["log-\(stem).txt", "report-\(stem).json"]), "\(arrived)")
        #expect(try FileIO.listDirectory(outbox).isEmpty)
    }

    // MARK: - Helpers

    /// Points `[server]` at a port nothing listens on: connections are refused at once.
    /// Two mirrors copied from `fleet`: "frozen" serves `host` a manifest that expired an hour ago, "fresh" the
    /// current one.
    struct FrozenAndFresh {
        let frozen: MirrorServer
        let fresh: MirrorServer

        func stop() {
            frozen.stop()
            fresh.stop()
        }

        /// The primary down, and both mirrors in `host`'s client.toml, frozen first.
        func failOver(_ fleet: ClientFleet, _ host: String) throws {
            try FailoverTests.takeThePrimaryDown(fleet, host)
            try FailoverTests.addMirrors(
                fleet, host,
                [
                    ("frozen", frozen.sshd.port, frozen.sshd.hostPublicKey),
                    ("fresh", fresh.sshd.port, fresh.sshd.hostPublicKey),
                ])
        }
    }

    static func frozenAndFreshMirrors(_ fleet: ClientFleet, _ host: String) async throws -> FrozenAndFresh {
        let frozen = try await MirrorServer.start(copying: fleet)
        let fresh: MirrorServer
        do { fresh = try await MirrorServer.start(copying: fleet) } catch {
            frozen.stop()
            throw error
        }
        let mirrors = FrozenAndFresh(frozen: frozen, fresh: fresh)
        do {
            var expired = try fleet.manifest(host)
            expired.expiresAt = UTCTime.iso(Date().addingTimeInterval(-3600))
            try frozen.plantManifest(host, expired, fleet: fleet)
        } catch {
            mirrors.stop()
            throw error
        }
        return mirrors
    }

    /// The mirror at `port` unreachable for `host`: its client.toml entry points at a port nothing listens on.
    static func takeAMirrorDown(_ fleet: ClientFleet, _ host: String, port: Int) throws {
        let gone = try LoopbackPort.free()
        try fleet.editClientConfiguration(host) { text in
            text.replacingOccurrences(of: "port = \(port)\n", with: "port = \(gone)\n")
        }
    }

    static func takeThePrimaryDown(_ fleet: ClientFleet, _ host: String) throws {
        let free = try LoopbackPort.free()
        try fleet.editClientConfiguration(host) { text in
            text.replacingOccurrences(of: "port = \(fleet.sshd.port)\n", with: "port = \(free)\n")
                .replacingOccurrences(of: "\nport = ", with: "\n# primary down\nport = ")
        }
    }

    static func bringThePrimaryBack(_ fleet: ClientFleet, _ host: String) throws {
        try fleet.editClientConfiguration(host) { text in
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            return zip(lines, [""] + lines).map { line, previous in
                previous == "# primary down" ? "port = \(fleet.sshd.port)" : line
            }.joined(separator: "\n")
        }
    }

    static func addMirrors(_ fleet: ClientFleet, _ host: String, _ mirrors: [(String, Int, String)]) throws {
        try fleet.editClientConfiguration(host) { text in
            text
                + mirrors.map { name, port, key in
                    "\n[[servers]]\nname = \"\(name)\"\naddress = \"127.0.0.1\"\nport = \(port)\nhost_key = \"\(key)\"\n"
                }.joined()
        }
    }

    static func heartbeat(_ logs: String) throws -> Heartbeat {
        try HeartbeatFiles.heartbeat(in: logs)
    }
}

/// A mirror of a ``ClientFleet``'s server: a copy of its chroot root (what rsync would leave) served by an sshd of
/// its own, with the same users and authorized keys and a host key of its own.
struct MirrorServer {
    let directory: TestDirectory
    let sshd: TestSSHD
    var chrootRoot: String { directory.path("chroot") }

    static func start(copying fleet: ClientFleet) async throws -> MirrorServer {
        let directory = try TestDirectory.makeRootOwned()
        do {
            let root = directory.path("chroot")
            let copy = try await Command.run("/usr/bin/cp", ["-a", fleet.fixture.chrootRoot, root])
            guard copy.exitCode == 0 else { throw TestSupportError("cp -a: \(copy.standardError)") }
            // The chroot links `fleet setup` makes on a mirror: each host user to its chroot in the copy.
            let primaryLinks = fleet.fixture.stateDirectory + "/chroots"
            let links = directory.path("chroots")
            try FileIO.ensureDirectory(links, mode: 0o755, owner: 0, group: 0)
            for user in try FileIO.listDirectory(primaryLinks) {
                let target = try FileIO.readLink(primaryLinks + "/" + user)
                try FileIO.replaceSymlink(
                    links + "/" + user, pointingTo: root + target.dropFirst(fleet.fixture.chrootRoot.count))
            }
            let config = try String(contentsOfFile: fleet.sshd.configPath, encoding: .utf8)
            let body = config.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix("ListenAddress") && !$0.hasPrefix("HostKey") && !$0.hasPrefix("PidFile") }
                .joined(separator: "\n")
                .replacingOccurrences(of: "ChrootDirectory \(primaryLinks)/", with: "ChrootDirectory \(links)/")
            guard body.contains("ChrootDirectory \(links)/%u") else {
                throw TestSupportError("the mirror's sshd configuration does not chroot into the copy")
            }
            return MirrorServer(directory: directory, sshd: try TestSSHD.start(configBody: body))
        } catch {
            directory.remove()
            throw error
        }
    }

    func stop() {
        sshd.stop()
        directory.remove()
    }

    func logs(_ host: String) throws -> String { ChrootLayout(root: chrootRoot, host: try HostName(host)).logs }

    func uploaded(_ host: String) throws -> [String] { try FileIO.listDirectory(try logs(host)).sorted() }

    func lastReport(_ host: String) throws -> RunReport? {
        guard let name = try uploaded(host).filter({ $0.hasPrefix("report-") }).last else { return nil }
        return try JSONDecoder().decode(RunReport.self, from: Data(try FileIO.read(try logs(host) + "/" + name)))
    }

    /// Signs `manifest` with the fleet's key and puts it in this mirror's chroot, as the publisher would.
    func plantManifest(_ host: String, _ manifest: Manifest, fleet: ClientFleet) throws {
        let path = ChrootLayout(root: chrootRoot, host: try HostName(host)).manifest
        _ = unlink(path)
        try FileIO.writeAtomically(
            try manifest.signed(with: try SigningKeyFile.load(stateDirectory: fleet.fixture.stateDirectory)), to: path,
            mode: 0o644, owner: 0, group: Accounts.groupID(named: fleet.prefix + host) ?? 0)
    }
}
