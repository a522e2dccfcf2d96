import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Publishing
import ServerStore
import Testing

/// Rollouts in rings, for real: a server with sshd, three hosts whose clients apply toy systems with the real
/// Nix, and `fleet` itself. A good generation goes ring by ring on the hosts' own reports; a canary that fails
/// halts it and the later rings never see the generation; resume and abort; and a `fleet` killed at any step of
/// a publish or a rollout step leaves a rollout that goes on where it stopped. Host names of their own.
@Suite("rollouts in rings", .serialized)
struct RolloutTests: ClientRunSuite {
    static let hosts = ["ringcanary", "ringwave", "ringrest"]

    /// fleet.toml's rings for the three hosts (the third is in the last ring, of hosts in none), and a hook that
    /// appends every rollout event to `events`.
    static func rings(events: String) -> String {
        """

        [[rollout.rings]]
        name = "canary"
        hosts = ["ringcanary"]

        [[rollout.rings]]
        name = "wave"
        hosts = ["ring?ave"]

        [[hooks]]
        command = ["/bin/sh", "-c", "cat >> \(events)"]
        events = ["rollout-halted", "rollout-promoted"]

        """
    }

    /// A fleet whose hosts all applied generation 1, then rings added: the next publish is a rollout.
    static func startWithRings() async throws -> (ClientFleet, events: String) {
        let fleet = try await ClientFleet.start(hosts: hosts)
        do {
            for host in hosts {
                let output = try await fleet.client(host)
                #expect(output.exitCode == applied, "\(host): \(output.standardError)")
            }
            let events = fleet.clients.path("rollout-events.jsonl")
            try append(rings(events: events), to: fleet.fixture)
            return (fleet, events)
        } catch {
            fleet.stop()
            throw error
        }
    }

    static func append(_ text: String, to fixture: FleetFixture) throws {
        let toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        try fixture.write("fleet.toml", toml + text)
    }

    /// `fleet rollout <arguments> --json`: the rollout report, and the notes.
    static func rollout(
        _ fixture: FleetFixture, _ arguments: [String] = ["status"], environment: [String: String] = [:]
    )
        async throws -> (exitCode: Int32, rollout: [String: Any], notes: [String])
    {
        let output = try await fixture.fleet(["rollout"] + arguments + ["--json"], environment: environment)
        let object =
            (try? JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8))) as? [String: Any] ?? [:]
        return (output.exitCode, object["rollout"] as? [String: Any] ?? [:], object["notes"] as? [String] ?? [])
    }

    static func generation(_ fixture: FleetFixture, _ host: String) throws -> UInt64 {
        try fixture.verifiedManifest(host).generation
    }

    static func hookEvents(_ file: String) -> [String] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map { line in
            let event = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
            let details = event["details"] as? [String: String] ?? [:]
            return "\(event["event"] as? String ?? "?") \(event["host"] as? String ?? details["ring"] ?? "-")"
        }
    }

    @Test func aGoodGenerationGoesRingByRingOnTheHostsOwnReports() async throws {
        let (fleet, events) = try await Self.startWithRings()
        defer { fleet.stop() }
        let fixture = fleet.fixture
        try fixture.write("common/base.nix", "{ motd = [ \"rollout two\" ]; }\n")
        let (status, rows) = try await ClientBuildTests.publishJSON(fixture)
        #expect(status == 0, "\(rows)")
        #expect(
            rows.map { "\($0["host"] ?? "") \($0["status"] ?? "")" }.sorted() == [
                "ringcanary published", "ringrest staged", "ringwave staged",
            ])
        #expect(try Self.generation(fixture, "ringcanary") == 2)
        #expect(try Self.generation(fixture, "ringwave") == 1 && Self.generation(fixture, "ringrest") == 1)

        // Nothing moves before the canary reports: the wave polls and finds nothing new.
        var step = try await Self.rollout(fixture)
        #expect(step.rollout["status"] as? String == "running" && step.rollout["ring"] as? String == "canary")
        #expect((step.rollout["next"] as? String)?.contains("ringcanary (generation 2)") == true, "\(step)")
        #expect(try await fleet.client("ringwave").exitCode == Self.unchanged)
        // A publish with nothing new does not start the rollout again.
        #expect(try await ClientBuildTests.publishJSON(fixture).0 == 0)
        #expect(try Self.generation(fixture, "ringwave") == 1)

        #expect(try await fleet.client("ringcanary").exitCode == Self.applied)
        step = try await Self.rollout(fixture)
        #expect(step.rollout["ring"] as? String == "wave", "\(step)")
        #expect(try Self.generation(fixture, "ringwave") == 2 && Self.generation(fixture, "ringrest") == 1)

        #expect(try await fleet.client("ringwave").exitCode == Self.applied)
        // `fleet status` checks it too.
        let statusOutput = try await fixture.fleet(["status"])
        #expect(statusOutput.standardOutput.contains("rollout: running at ring rest"), "\(statusOutput.standardOutput)")
        #expect(try Self.generation(fixture, "ringrest") == 2)
        #expect(try await fleet.client("ringrest").exitCode == Self.applied)
        step = try await Self.rollout(fixture)
        #expect(step.rollout["status"] as? String == "complete", "\(step)")
        #expect(Self.hookEvents(events) == ["rollout-promoted wave", "rollout-promoted rest"])
        for host in Self.hosts {
            #expect(try fleet.state(host).applied?.generation == 2, "\(host)")
        }
    }

    @Test func aFailingCanaryHaltsTheRolloutAndResumeGoesOn() async throws {
        let (fleet, events) = try await Self.startWithRings()
        defer { fleet.stop() }
        let fixture = fleet.fixture
        try fixture.write("common/base.nix", "{ motd = [ \"a canary that fails\" ]; }\n")
        #expect(try await ClientBuildTests.publishJSON(fixture).0 == 0)
        let failing = try await fleet.client("ringcanary", environment: ["FLEET_ACTIVATION_HOOK": "/bin/false"])
        #expect([Self.failed, Self.rolledBack].contains(failing.exitCode), "\(failing.standardError)")

        var step = try await Self.rollout(fixture)
        #expect(step.rollout["status"] as? String == "halted", "\(step)")
        #expect(step.rollout["haltedHost"] as? String == "ringcanary")
        #expect(Self.hookEvents(events) == ["rollout-halted ringcanary"])
        // Halted: the later rings never see it, however often anyone looks or publishes the same thing.
        #expect(try await ClientBuildTests.publishJSON(fixture).0 == 0)
        step = try await Self.rollout(fixture)
        #expect(step.rollout["status"] as? String == "halted")
        #expect(try Self.generation(fixture, "ringwave") == 1 && Self.generation(fixture, "ringrest") == 1)
        #expect(try await fleet.client("ringwave").exitCode == Self.unchanged)
        #expect(Self.hookEvents(events) == ["rollout-halted ringcanary"], "announced once")

        step = try await Self.rollout(fixture, ["resume"])
        #expect(step.exitCode == 0, "\(step)")
        #expect(step.rollout["ring"] as? String == "wave" && step.rollout["status"] as? String == "running", "\(step)")
        #expect(try Self.generation(fixture, "ringwave") == 2 && Self.generation(fixture, "ringrest") == 1)
        #expect(try await fleet.client("ringwave").exitCode == Self.applied)
        step = try await Self.rollout(fixture)
        #expect(step.rollout["ring"] as? String == "rest", "\(step)")
        // Resuming what is not halted says so.
        let again = try await fixture.fleet(["rollout", "resume"])
        #expect(again.exitCode == 1 && again.standardError.contains("not halted"), "\(again.standardError)")
    }

    @Test func abortReturnsTheCanaryToItsPreviousSystemAsANewerGeneration() async throws {
        let (fleet, _) = try await Self.startWithRings()
        defer { fleet.stop() }
        let fixture = fleet.fixture
        let firstSystem = try #require(fleet.activations("ringcanary").last?.split(separator: " ").last)
        let firstSnapshot = try fixture.verifiedManifest("ringcanary").snapshot.sha256
        try fixture.write("common/base.nix", "{ motd = [ \"a canary that rolls back\" ]; }\n")
        #expect(try await ClientBuildTests.publishJSON(fixture).0 == 0)
        let failing = try await fleet.client("ringcanary", environment: ["FLEET_ACTIVATION_HOOK": "/bin/false"])
        #expect([Self.failed, Self.rolledBack].contains(failing.exitCode))
        #expect(try await Self.rollout(fixture).rollout["status"] as? String == "halted")

        let step = try await Self.rollout(fixture, ["abort"])
        #expect(step.exitCode == 0 && step.rollout["status"] as? String == "aborted", "\(step)")
        let reverted = try fixture.verifiedManifest("ringcanary")
        #expect(reverted.generation == 3 && reverted.snapshot.sha256 == firstSnapshot)
        #expect(try Self.generation(fixture, "ringwave") == 1 && Self.generation(fixture, "ringrest") == 1)
        #expect(try await fleet.client("ringcanary").exitCode == Self.applied, "not refused as a downgrade")
        #expect(fleet.activations("ringcanary").last?.hasSuffix(" " + firstSystem) == true)
        #expect(try fleet.state("ringcanary").applied?.generation == 3)
        #expect(try await fleet.client("ringwave").exitCode == Self.unchanged, "the wave never saw generation 2")
        let nothing = try await fixture.fleet(["rollout", "abort"])
        #expect(nothing.exitCode == 1 && nothing.standardError.contains("nothing to abort"))
    }

    // MARK: - Killed at any step (no clients: `promote` stands in for their reports)

    static let killHosts = ["ringkill-c", "ringkill-w", "ringkill-r"]

    static func killFixture() async throws -> FleetFixture {
        let fixture = try FleetFixture(hosts: killHosts)
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        try append(
            """

            [[rollout.rings]]
            name = "canary"
            hosts = ["ringkill-c"]
            [[rollout.rings]]
            name = "wave"
            hosts = ["ringkill-w"]

            """, to: fixture)
        try fixture.write("common/base.nix", "{ motd = [ \"killed\" ]; }\n")
        return fixture
    }

    static let publishPoints: [(FaultPoint, String)] = [
        (.snapshotWritten, "ringkill-c"), (.snapshotRenamed, "ringkill-c"), (.recorded, "ringkill-c"),
        (.staged, "ringkill-c"), (.manifestWritten, "ringkill-c"), (.manifestRenamed, "ringkill-c"),
        (.snapshotRenamed, "ringkill-w"), (.recorded, "ringkill-w"), (.staged, "ringkill-w"),
    ]

    @Test(arguments: publishPoints)
    func aPublishKilledAtAnyStepLeavesARolloutThatGoesOn(point: FaultPoint, host: String) async throws {
        let fixture = try await Self.killFixture()
        defer { fixture.remove() }
        let killed = try await fixture.fleet(
            ["publish"], environment: ["FLEET_FAULT_POINT": "\(point.rawValue)@\(host)"])
        #expect(killed.exitCode == 128 + 9, "expected the publish to die at \(point)@\(host)")
        // No host outside the first ring can see a new manifest; every manifest is valid.
        #expect(try Self.generation(fixture, "ringkill-w") == 1 && Self.generation(fixture, "ringkill-r") == 1)
        let canaryAfterKill = try Self.generation(fixture, "ringkill-c")

        // The next publish (or rollout step) finishes it.
        let again = try await fixture.fleet(["publish"])
        #expect(again.exitCode == 0, "\(again.standardOutput)\(again.standardError)")
        let canary = try Self.generation(fixture, "ringkill-c")
        #expect(canary >= canaryAfterKill && canary >= 2)
        let store = try StateStore(stateDirectory: fixture.stateDirectory)
        #expect(try store.lastGeneration(of: try fixture.host("ringkill-c")) == canary)
        var step = try await Self.rollout(fixture)
        #expect(step.rollout["status"] as? String == "running" && step.rollout["ring"] as? String == "canary")
        #expect(try Self.generation(fixture, "ringkill-w") == 1 && Self.generation(fixture, "ringkill-r") == 1)
        let staged = (step.rollout["hosts"] as? [[String: Any]] ?? []).filter { $0["delivered"] as? Bool == false }
        #expect(staged.compactMap { $0["host"] as? String }.sorted() == ["ringkill-r", "ringkill-w"], "\(step)")

        step = try await Self.rollout(fixture, ["promote", "wave"])
        #expect(step.exitCode == 0, "\(step)")
        let wave = try Self.generation(fixture, "ringkill-w")
        let recordedWave = try store.lastGeneration(of: try fixture.host("ringkill-w"))
        #expect(wave >= 2 && wave == recordedWave)
        #expect(try Self.generation(fixture, "ringkill-r") == 1)
        step = try await Self.rollout(fixture, ["promote", "rest"])
        #expect(try Self.generation(fixture, "ringkill-r") == 2)
        let snapshots = try FileIO.listDirectory(try fixture.layout("ringkill-w").snapshots)
        #expect(!snapshots.contains { $0.hasPrefix(FileIO.temporaryPrefix) })
    }

    @Test(arguments: [(FaultPoint.promoted, "wave"), (.delivered, "ringkill-w")])
    func aRolloutStepKilledAtAnyStepIsFinishedByTheNext(point: FaultPoint, target: String) async throws {
        let fixture = try await Self.killFixture()
        defer { fixture.remove() }
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let killed = try await fixture.fleet(
            ["rollout", "promote", "wave"], environment: ["FLEET_FAULT_POINT": "\(point.rawValue)@\(target)"])
        #expect(killed.exitCode == 128 + 9)
        let step = try await Self.rollout(fixture)
        #expect(step.rollout["ring"] as? String == "wave", "\(step)")
        #expect(try Self.generation(fixture, "ringkill-w") == 2 && Self.generation(fixture, "ringkill-r") == 1)
        let delivered = (step.rollout["hosts"] as? [[String: Any]] ?? []).first {
            $0["host"] as? String == "ringkill-w"
        }
        #expect(delivered?["delivered"] as? Bool == true, "\(step)")
    }

    @Test func anAbortKilledHalfwayIsFinishedByTheNextAndANewerPublishStartsAgainFromTheFirstRing() async throws {
        let fixture = try await Self.killFixture()
        defer { fixture.remove() }
        let before = try ["ringkill-c", "ringkill-w"].map { try fixture.verifiedManifest($0).snapshot.sha256 }
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        #expect(try await Self.rollout(fixture, ["promote", "wave"]).exitCode == 0)
        let killed = try await fixture.fleet(
            ["rollout", "abort"], environment: ["FLEET_FAULT_POINT": "manifest-renamed@ringkill-c"])
        #expect(killed.exitCode == 128 + 9)
        let step = try await Self.rollout(fixture, ["abort"])
        #expect(step.exitCode == 0 && step.rollout["status"] as? String == "aborted", "\(step)")
        let after = try ["ringkill-c", "ringkill-w"].map { try fixture.verifiedManifest($0) }
        #expect(after.map(\.snapshot.sha256) == before, "each host has its previous configuration again")
        #expect(after.allSatisfy { $0.generation >= 3 }, "as a newer generation")
        #expect(try Self.generation(fixture, "ringkill-r") == 1, "the last ring never saw generation 2")

        // A newer publish: a new rollout from the first ring; every host only ever sees its generations rise.
        try fixture.write("common/base.nix", "{ motd = [ \"fixed\" ]; }\n")
        let (status, rows) = try await ClientBuildTests.publishJSON(fixture)
        #expect(status == 0, "\(rows)")
        let restarted = try await Self.rollout(fixture)
        #expect(restarted.rollout["ring"] as? String == "canary" && restarted.rollout["status"] as? String == "running")
        #expect(try Self.generation(fixture, "ringkill-c") > after[0].generation)
        #expect(try Self.generation(fixture, "ringkill-w") == after[1].generation)
        #expect(try Self.generation(fixture, "ringkill-r") == 1)
    }
}
