import CommandRunner
import FleetFiles
import FleetHooks
import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import Inventory
import Publishing
import ServerStore
import Testing

@Suite("fleet publish")
struct PublishTests {
    @Test func publishesSignedVerifiableGenerationsAndKeepsUnchangedHostsAsTheyAre() async throws {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        try fixture.write("secrets/b/token", "tok\n")
        var output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("2 published"))
        #expect(try fixture.verifiedManifest("a").generation == 1)
        let b = try fixture.verifiedManifest("b")
        #expect(b.generation == 1 && b.host.value == "b" && b.operation == .switch && b.attribute == "b")
        #expect(b.snapshot.path == "/snapshots/1.tar.zst")

        // A second publish with no edits changes nothing on disk.
        let before = try fixture.chrootListing()
        output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0 && output.standardOutput.contains("2 unchanged"))
        #expect(try fixture.chrootListing() == before)

        // An edit in common/ changes every host; an edit in one host's tree only that host.
        try fixture.write("common/base.nix", "{ motd = [ \"changed\" ]; }\n")
        output = try await fixture.fleet(["publish", "--json"])
        let results = try JSONDecoder().decode([PublishResult].self, from: Data(output.standardOutput.utf8))
        #expect(results.map(\.status) == [.published, .published])
        #expect(results.map(\.generation) == [2, 2] && results.map(\.previousGeneration) == [1, 1])
        try fixture.write("hosts/a/extra.nix", "{ }\n")
        output = try await fixture.fleet(["publish"])
        #expect(try fixture.verifiedManifest("a").generation == 3)
        #expect(try fixture.verifiedManifest("b").generation == 2)

        // A change of a secret, or of the operation in fleet.toml, is a change too.
        try fixture.write("secrets/b/token", "rotated\n")
        _ = try await fixture.fleet(["publish", "b"])
        #expect(try fixture.verifiedManifest("b").generation == 3)
        try fixture.write(
            "fleet.toml",
            try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                .replacingOccurrences(of: "[hosts.b]\n", with: "[hosts.b]\noperation = \"boot\"\n"))
        _ = try await fixture.fleet(["publish"])
        let rebooted = try fixture.verifiedManifest("b")
        #expect(rebooted.generation == 4 && rebooted.operation == .boot)
        #expect(try fixture.verifiedManifest("a").generation == 3)

        // Everything is recorded in state.db.
        let store = try StateStore(stateDirectory: fixture.stateDirectory)
        #expect(try store.publications(of: try fixture.host("b")).map(\.generation) == [1, 2, 3, 4])
        #expect(try store.events(host: try fixture.host("a")).filter { $0.kind == "published" }.count == 3)
    }

    @Test func snapshotsAreDeterministic() async throws {
        let first = try FleetFixture(hosts: ["a"])
        defer { first.remove() }
        try first.write("hosts/a/z.nix", "{ }\n")
        try first.write("hosts/a/sub/m.nix", "{ x = 1; }\n", mode: 0o755)
        try first.write("secrets/a/key", "k\n")
        let second = try FleetFixture(hosts: ["a"])
        defer { second.remove() }
        // Same content, made in another order at another time with other modes and owners.
        try second.write("secrets/a/key", "k\n", mode: 0o640)
        try second.write("hosts/a/sub/m.nix", "{ x = 1; }\n", mode: 0o700)
        try second.write("hosts/a/z.nix", "{ }\n", mode: 0o600)
        #expect(chown(second.repository + "/hosts/a/z.nix", 1234, 1234) == 0)
        for fixture in [first, second] {
            let output = try await fixture.fleet(["publish"])
            #expect(output.exitCode == 0, "\(output.standardError)")
        }
        let bytes = try [first, second].map { try FileIO.read(try $0.layout("a").snapshot(1)) }
        #expect(bytes[0] == bytes[1])
        #expect(try first.verifiedManifest("a").contentDigest == second.verifiedManifest("a").contentDigest)
    }

    /// File digests are kept between publishes (only for files not changed in the last seconds, whose
    /// timestamps could still stay the same through an edit), and an edit that keeps the file's inode, size
    /// and modification time is still seen, by its change time.
    @Test func fileDigestsAreKeptBetweenPublishesAndAnEditIsStillSeen() async throws {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        try fixture.write("hosts/a/x.nix", "one\n")
        let digests = fixture.stateDirectory + "/file-digests"
        var output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(try FileStatus.of(digests) == nil, "every file was written just now: none is kept")
        // A modification time before 1970 is stored (and read back) too.
        var old = [timespec(tv_sec: -86_400, tv_nsec: 5), timespec(tv_sec: -86_400, tv_nsec: 5)]
        #expect(utimensat(AT_FDCWD, fixture.repository + "/common/base.nix", &old, 0) == 0)

        // From here on, publishes run 4 s later by fleet's clock (WallClock): past the 3 s window, without waiting.
        let later = ["FLEET_TEST_CLOCK_OFFSET_SECONDS": "4"]
        output = try await fixture.fleet(["publish", "--dry-run"], environment: later)
        #expect(output.exitCode == 0 && output.standardOutput.contains("2 unchanged"))
        #expect(try FileStatus.of(digests) == nil, "a dry run writes nothing")
        output = try await fixture.fleet(["publish"], environment: later)
        #expect(output.exitCode == 0 && output.standardOutput.contains("2 unchanged"))
        let stored = String(decoding: try FileIO.read(digests), as: UTF8.self)
        #expect(stored.contains("/hosts/a/x.nix\n") && stored.contains("/common/base.nix\n"))
        #expect(try FileStatus.of(digests)?.permissions == 0o600)
        #expect(stored.contains(" -86400 5 "))
        // Read back whole (else every file would be hashed and the file rewritten), and not rewritten when
        // nothing was learnt.
        let storedInode = try FileStatus.of(digests)?.inode
        output = try await fixture.fleet(["publish"], environment: later)
        #expect(output.exitCode == 0 && output.standardOutput.contains("2 unchanged"))
        #expect(try FileStatus.of(digests)?.inode == storedInode)

        // Rewrite x.nix in place with other bytes of the same length, and set its modification time back.
        let path = fixture.repository + "/hosts/a/x.nix"
        let before = try #require(try FileStatus.of(path))
        let fd = open(path, O_WRONLY | O_TRUNC)
        #expect(fd >= 0)
        try FileIO.writeAll(fd: fd, Array("two\n".utf8), path: path)
        close(fd)
        var times = [
            timespec(tv_sec: Int(before.modificationSeconds), tv_nsec: Int(before.modificationNanoseconds)),
            timespec(tv_sec: Int(before.modificationSeconds), tv_nsec: Int(before.modificationNanoseconds)),
        ]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        let after = try #require(try FileStatus.of(path))
        #expect(after.inode == before.inode && after.size == before.size)
        #expect(after.modificationSeconds == before.modificationSeconds)
        #expect(after.modificationNanoseconds == before.modificationNanoseconds)
        output = try await fixture.fleet(["publish", "--json"], environment: later)
        let results = try JSONDecoder().decode([PublishResult].self, from: Data(output.standardOutput.utf8))
        #expect(results.map(\.status) == [.published, .unchanged])
        #expect(try fixture.verifiedManifest("a").generation == 2)

        // A damaged digest file is ignored, and replaced.
        try FileIO.writeAtomically(Array("fleet file digests v1\nnonsense\n".utf8), to: digests, mode: 0o600)
        output = try await fixture.fleet(["publish"], environment: later)
        #expect(output.exitCode == 0 && output.standardOutput.contains("2 unchanged"))
        #expect(String(decoding: try FileIO.read(digests), as: UTF8.self).contains("/hosts/a/x.nix\n"))
    }

    @Test func aRefusedHostKeepsItsGenerationAndOthersStillPublish() async throws {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        _ = try await fixture.fleet(["publish"])
        try fixture.write("common/base.nix", "{ motd = [ \"v2\" ]; }\n")
        try fixture.link("hosts/a/shadow", to: "/etc/shadow")
        let output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 1)
        #expect(output.standardOutput.contains("link hosts/a/shadow -> /etc/shadow leads outside the fleet repository"))
        #expect(try fixture.verifiedManifest("a").generation == 1)
        #expect(try fixture.verifiedManifest("b").generation == 2)
        // Nothing of the refused host's new tree reached its chroot.
        #expect(try FileIO.listDirectory(try fixture.layout("a").snapshots) == ["1.tar.zst"])
        let events = try StateStore(stateDirectory: fixture.stateDirectory).events(host: try fixture.host("a"))
        #expect(events.last?.kind == "refused" && events.last?.detail.contains("/etc/shadow") == true)
    }

    @Test func dryRunWritesNothing() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        _ = try await fixture.fleet(["publish"])
        try fixture.write("hosts/a/new.nix", "{ }\n")
        let before = try fixture.chrootListing()
        let output = try await fixture.fleet(["publish", "--dry-run"])
        #expect(output.exitCode == 0 && output.standardOutput.contains("would-publish"))
        #expect(output.standardOutput.contains("2 (was 1)"))
        #expect(try fixture.chrootListing() == before)
    }

    @Test func generationsOnlyIncreaseEvenWhenStateIsLost() async throws {
        let fixture = try FleetFixture(hosts: ["a"], serverToml: "snapshot_grace_seconds = 0")
        defer { fixture.remove() }
        _ = try await fixture.fleet(["publish"])
        try fixture.write("hosts/a/x.nix", "1\n")
        _ = try await fixture.fleet(["publish"])
        try FileIO.removeTree(fixture.stateDirectory + "/" + StateDatabase.fileName)
        try fixture.write("hosts/a/x.nix", "2\n")
        _ = try await fixture.fleet(["publish"])
        #expect(try fixture.verifiedManifest("a").generation == 3)
        // The chroot's manifest alone is enough: and with the manifest gone, state.db is.
        try FileIO.removeTree(try fixture.layout("a").manifest)
        try fixture.write("hosts/a/x.nix", "3\n")
        _ = try await fixture.fleet(["publish"])
        #expect(try fixture.verifiedManifest("a").generation == 4)
    }

    @Test func oldSnapshotsAreCollectedAfterTheGracePeriodNeverTheCurrentOne() async throws {
        let fixture = try FleetFixture(hosts: ["a"], serverToml: "snapshot_grace_seconds = 600")
        defer { fixture.remove() }
        let configuration = try fixture.configuration()
        let store = try StateStore(stateDirectory: fixture.stateDirectory)
        let publisher = try Publisher(
            configuration: configuration, signingKey: try SigningKeyFile.load(stateDirectory: fixture.stateDirectory),
            store: store, sourceCommit: "test")
        let start = Date()
        for version in 1...3 {
            try fixture.write("hosts/a/x.nix", "\(version)\n")
            _ = try await publisher.publish(configuration.hosts, now: start)
        }
        let layout = try fixture.layout("a")
        #expect(try FileIO.listDirectory(layout.snapshots).sorted() == ["1.tar.zst", "2.tar.zst", "3.tar.zst"])
        // Within the grace period nothing goes; after it, all but the current one.
        _ = try await publisher.publish(configuration.hosts, now: start.addingTimeInterval(300))
        #expect(try FileIO.listDirectory(layout.snapshots).count == 3)
        _ = try await publisher.publish(configuration.hosts, now: start.addingTimeInterval(3600))
        #expect(try FileIO.listDirectory(layout.snapshots) == ["3.tar.zst"])
        _ = try await publisher.publish(configuration.hosts, now: start.addingTimeInterval(86400 * 30))
        #expect(try fixture.verifiedManifest("a").generation == 3)
    }

    @Test func aPublisherIsConfiguredAtInitAndReturnsItsRunWithTheHooksEvents() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        let configuration = try fixture.configuration()
        let store = try StateStore(stateDirectory: fixture.stateDirectory)
        let key = try SigningKeyFile.load(stateDirectory: fixture.stateDirectory)
        let dryRun = try Publisher(
            configuration: configuration, signingKey: key, store: store, sourceCommit: "test",
            options: PublishOptions(dryRun: true))
        let preview = try await dryRun.publish(configuration.hosts)
        #expect(preview.dryRun && preview.warnings.isEmpty && !preview.hasFailures)
        #expect(preview.results.map(\.status) == [.wouldPublish])
        #expect(try FileStatus.of(try fixture.layout("a").manifest) == nil, "a dry run writes nothing")
        #expect(PublishAnnouncer.events(of: preview, at: "now").isEmpty, "nor announces anything")

        let publisher = try Publisher(configuration: configuration, signingKey: key, store: store, sourceCommit: "test")
        let run = try await publisher.publish(configuration.hosts)
        #expect(!run.dryRun && run.warnings.isEmpty && !run.hasFailures)
        #expect(run.results.map(\.status) == [.published])
        let events = PublishAnnouncer.events(of: run, at: "now")
        #expect(
            events == [.published(host: "a", generation: 1, previousGeneration: nil, sourceCommit: "test", at: "now")])
        // Published once, recorded once: the announcer fires hooks, it does not record the publish again.
        #expect(try store.events(host: try fixture.host("a")).filter { $0.kind == "published" }.count == 1)
        #expect(PublishAnnouncer.events(of: try await publisher.publish(configuration.hosts), at: "now").isEmpty)
    }

    @Test func aPublishsEventsReachTheHooksInOneCall() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let received = directory.path("events.jsonl")
        let fixture = try FleetFixture(
            hosts: ["a"],
            extraToml: """
                [[hooks]]
                command = ["/bin/sh", "-c", "cat >> \(received)"]
                events = ["published", "build-failed"]
                timeout_seconds = 120
                """)
        defer { fixture.remove() }
        let configuration = try fixture.configuration()
        let publisher = try Publisher(
            configuration: configuration, signingKey: try SigningKeyFile.load(stateDirectory: fixture.stateDirectory),
            store: try StateStore(stateDirectory: fixture.stateDirectory), sourceCommit: "test")
        let run = try await publisher.publish(configuration.hosts)
        let deliveries = await PublishAnnouncer(configuration).announce(run)
        #expect(deliveries.count == 1 && deliveries.allSatisfy { $0.failure == nil }, "\(deliveries)")
        let line = try String(contentsOfFile: received, encoding: .utf8)
        #expect(line.contains("\"event\":\"published\"") && line.contains("\"host\":\"a\""), "\(line)")
        // A host the build gate held back is `build-failed`, with the generation it keeps.
        let held = PublishRun(
            results: [.init(host: try fixture.host("a"), status: .buildFailed, generation: 1, reason: "did not build")],
            dryRun: false)
        #expect(
            PublishAnnouncer.events(of: held, at: "now") == [
                .buildFailed(host: "a", reason: "did not build", keptGeneration: 1, at: "now")
            ])
    }

    @Test func aProblemOfTheRunAsAWholeIsAWarningAndTheHostsStillPublish() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        // The digest file's name is taken by a directory, so the digests learnt cannot be kept.
        try FileIO.createDirectories(fixture.stateDirectory + "/file-digests/taken")
        let output = try await fixture.fleet(["publish"], environment: ["FLEET_TEST_CLOCK_OFFSET_SECONDS": "4"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(
            output.standardError.contains("warning: could not keep the file digests for the next publish"),
            "\(output.standardError)")
        #expect(try fixture.verifiedManifest("a").generation == 1)
    }

    @Test func theComparisonsPublishedCopiesLiveOnlyInsideItsScope() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        try fixture.write("common/base.nix", "{ motd = [ \"v2\" ]; }\n")
        let tree = try HostTreeResolver(repository: fixture.repository).resolve(try fixture.host("a"), roles: [])
        let layout = try fixture.layout("a")
        let copy = try await PublishedTreeDiff.withComparison(tree, with: layout) { diff in
            #expect(diff.publishedGeneration == 1 && diff.files.map(\.change) == [.changed])
            let copy = try #require(diff.files.first?.publishedCopy)
            #expect(try FileStatus.of(copy)?.kind == .regular)
            return copy
        }
        // The scratch directory is the copy's path up to the snapshot's `tree/`.
        func scratch(of copy: String) throws -> String {
            String(copy[..<(try #require(copy.range(of: "/tree/"))).lowerBound])
        }
        #expect(try FileStatus.of(try scratch(of: copy)) == nil, "removed when the body returns")
        struct Stop: Error {}
        var thrownFrom: String?
        do {
            try await PublishedTreeDiff.withComparison(tree, with: layout) { diff in
                thrownFrom = diff.files.first?.publishedCopy
                throw Stop()
            }
            Issue.record("the body's error is rethrown")
        } catch is Stop {}
        let second = try #require(thrownFrom)
        #expect(try FileStatus.of(try scratch(of: second)) == nil, "and when it throws")
    }

    @Test func aSecondPublishWaitsForNoneAndSaysWhy() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        let lock = try Publisher.lock(stateDirectory: fixture.stateDirectory)
        let output = try await fixture.fleet(["publish"])
        withExtendedLifetime(lock) {}
        #expect(output.exitCode != 0)
        #expect(
            output.standardError.contains("another `fleet publish` (or `fleet update`, `fleet gc`, a rollout) holds"))
        #expect(try FileStatus.of(try fixture.layout("a").manifest) == nil)
    }

    @Test func unknownHostsAndMissingKeysAreClearErrors() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        var output = try await fixture.fleet(["publish", "nosuch"])
        #expect(output.exitCode != 0 && output.standardError.contains("no host \"nosuch\""))
        try FileIO.removeTree(fixture.stateDirectory + "/signing.key")
        output = try await fixture.fleet(["publish"])
        #expect(output.exitCode != 0 && output.standardError.contains("no signing key at"))
    }

    /// A publish killed (SIGKILL) at every step leaves the previous manifest and snapshot valid, and the
    /// next publish finishes the job and removes the leftovers.
    @Test(arguments: FaultPoint.withoutRings)
    func aPublishKilledAtAnyStepLeavesThePreviousGenerationValid(point: FaultPoint) async throws {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        var output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0)
        try fixture.write("common/base.nix", "{ motd = [ \"v2\" ]; }\n")
        output = try await fixture.fleet(["publish"], environment: ["FLEET_FAULT_POINT": "\(point.rawValue)@a"])
        #expect(output.exitCode == 128 + 9, "expected the publish to die by SIGKILL at \(point)")
        // Whatever happened, each host has one valid generation: the old one, or (once the manifest was
        // renamed into place) the new one.
        let a = try fixture.verifiedManifest("a")
        let renamed = [FaultPoint.manifestRenamed, .recorded].contains(point)
        #expect(a.generation == (renamed ? 2 : 1))
        #expect(try fixture.verifiedManifest("b").generation == 1, "b comes after a and was never reached")

        output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        // A snapshot left without its manifest is never reused: its number is skipped.
        let skipsOrphan = [FaultPoint.snapshotRenamed, .manifestWritten].contains(point)
        #expect(try fixture.verifiedManifest("a").generation == (skipsOrphan ? 3 : 2))
        #expect(try fixture.verifiedManifest("b").generation == 2)
        let layout = try fixture.layout("a")
        let leftovers = try (FileIO.listDirectory(layout.directory) + FileIO.listDirectory(layout.snapshots))
            .filter { $0.hasPrefix(FileIO.temporaryPrefix) }
        #expect(leftovers.isEmpty)
        let current = try fixture.verifiedManifest("a").generation
        let snapshots = try FileIO.listDirectory(layout.snapshots).compactMap(ChrootLayout.generation(ofSnapshotNamed:))
        #expect(snapshots.allSatisfy { $0 <= current }, "no orphan snapshot newer than the manifest")
        #expect(
            try StateStore(stateDirectory: fixture.stateDirectory).lastGeneration(of: try fixture.host("a")) == current)
    }
}
