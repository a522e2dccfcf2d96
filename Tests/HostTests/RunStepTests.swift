import ClientStateStore
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Testing

@testable import HostAgent

/// The steps of a host run that need no server, no Nix and no sshd, each on its own: the decision, where a
/// snapshot goes, the state directory's housekeeping, the activation journal, the report and the outbox.
@Suite("Host run steps in memory")
struct RunStepTests {
    let manifest: Manifest

    init() throws {
        manifest = Manifest(
            host: try HostName("alpha"), generation: 5, publishedAt: "2026-12-04T00:00:00Z", sourceCommit: "abc",
            snapshot: .init(path: "/snapshots/5.tar.zst", size: 100, sha256: "s5"), contentDigest: "c5",
            operation: .switch, attribute: "alpha")
    }

    static func log() -> RunLog { RunLog(host: "alpha", limit: 1 << 20, isTerminal: false) { _ in } }

    // MARK: - RunDecision

    @Test func aNewGenerationIsToBeApplied() {
        #expect(RunDecision.nothingToDo(manifest, state: ClientState()) == nil)
        var state = ClientState()
        state.applied = .init(
            generation: 4, contentDigest: "c4", sourceCommit: "x", system: "/nix/store/s4", operation: "switch",
            at: "t")
        #expect(RunDecision.nothingToDo(manifest, state: state) == nil)
    }

    @Test func theAppliedGenerationIsUnchanged() throws {
        var state = ClientState()
        state.applied = .init(
            generation: 5, contentDigest: "c5", sourceCommit: "abc", system: "/nix/store/s5", operation: "switch",
            at: "t")
        let result = try #require(RunDecision.nothingToDo(manifest, state: state))
        #expect(result.outcome == .unchanged && result.generation == 5)
        #expect(result.reason == "generation 5 is applied and current")
    }

    @Test func aFailedOrRolledBackGenerationIsNotTriedAgain() throws {
        for (outcome, words) in [(RunOutcome.failed, "failed at"), (.rolledBack, "was rolled back at")] {
            var state = ClientState()
            state.failed = .init(generation: 5, contentDigest: "c5", state: outcome, reason: "why", at: "t")
            let result = try #require(RunDecision.nothingToDo(manifest, state: state))
            #expect(result.outcome == .unchanged, "\(outcome)")
            #expect(result.reason.contains(words) && result.reason.contains("not tried again"), "\(result.reason)")
        }
    }

    @Test func theSameGenerationWithOtherContentIsNotTakenForTheAppliedOrFailedOne() {
        var state = ClientState()
        state.applied = .init(
            generation: 5, contentDigest: "other", sourceCommit: "abc", system: "/nix/store/s5", operation: "switch",
            at: "t")
        state.failed = .init(generation: 5, contentDigest: "other", state: .failed, reason: "why", at: "t")
        #expect(RunDecision.nothingToDo(manifest, state: state) == nil)
    }

    // MARK: - SnapshotFetch.Placement

    @Test func aGenerationIsExtractedBesideItsTargetAndACheckDirectoryInsideItself() {
        let generation = SnapshotFetch.Placement.generation("/var/lib/fleet-client/generations/5")
        #expect(generation.target == "/var/lib/fleet-client/generations/5")
        #expect(generation.scratch == "/var/lib/fleet-client/generations")
        let created = SnapshotFetch.Placement.createdDirectory("/root/inspect")
        #expect(created.target == "/root/inspect" && created.scratch == "/root/inspect")
    }

    // MARK: - StateDirectory

    @Test func theLockIsHeldByOneRunAtATime() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let state = StateDirectory(path: directory.path("state"), log: Self.log())
        guard case .next(let lock) = state.lock() else {
            Issue.record("the first run did not get the lock")
            return
        }
        defer { withExtendedLifetime(lock) {} }
        guard case .done(let result) = state.lock() else {
            Issue.record("a second run got the lock")
            return
        }
        #expect(result.outcome == .locked)
        #expect(try FileStatus.of(state.generations)?.permissions == 0o700)
    }

    @Test func pruningKeepsTheCurrentAndTheNewestGenerationsWithTheirSecrets() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let state = StateDirectory(path: directory.path, log: Self.log())
        try directory.makeDirectory("generations", mode: 0o700)
        try directory.makeDirectory("secrets.d", mode: 0o700)
        for number in 1...6 {
            try directory.makeDirectory("generations/\(number)", mode: 0o700)
            try directory.makeDirectory("secrets.d/\(number)", mode: 0o700)
        }
        state.pointCurrent(at: 3)
        #expect(try FileIO.readLink(directory.path("current")) == "generations/3")
        state.prune(current: 3, keeping: 2)
        #expect(try Set(FileIO.listDirectory(state.generations)) == ["3", "5", "6"])
        #expect(try Set(FileIO.listDirectory(directory.path("secrets.d"))) == ["3", "5", "6"])
    }

    // MARK: - Activation.Journal

    @Test func theJournalIsSavedLoadedAndRemoved() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        #expect(try Activation.Journal.load(stateDirectory: directory.path) == nil)
        let journal = Activation.Journal(
            generation: 5, contentDigest: "c5", sourceCommit: "abc", operation: "switch", system: "/nix/store/s5",
            madeProfileGeneration: 7, previousProfileGeneration: 6, previousSystem: "/nix/store/s4",
            previousGeneration: 4, deadline: 1_800_000_000, snapshotSHA256: "s5", startedAt: "t", pid: 42)
        try journal.save(stateDirectory: directory.path)
        #expect(try FileStatus.of(directory.path("pending.json"))?.permissions == 0o600)
        #expect(try Activation.Journal.load(stateDirectory: directory.path) == journal)
        Activation.Journal.remove(stateDirectory: directory.path)
        #expect(try Activation.Journal.load(stateDirectory: directory.path) == nil)
    }

    @Test func anUnreadableJournalStopsTheRunAndSaysWhatToCheck() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.writeFile("pending.json", text: "{ not json")
        let error = try #require(throws: ClientError.self) {
            try Activation.Journal.load(stateDirectory: directory.path)
        }
        #expect(error.description.contains("activation journal") && error.description.contains("by hand"))
    }

    // MARK: - RunReporter and ReportOutbox

    @Test func aReportStartsWithTheManifestAndThePreviousGeneration() throws {
        let configuration = ClientConfiguration(
            host: try HostName("alpha"),
            server: .init(
                address: "fleet.example.org", port: 22, user: "fleet-alpha",
                hostKey: try SSHPublicKey(ClientConfigurationTests.hostKey)),
            fleetPublicKey: try VerifyingKey(nixFormat: try ClientConfigurationTests.fleetKey()))
        let run = ClientRun(configuration: configuration, log: Self.log())
        var state = ClientState()
        state.applied = .init(
            generation: 4, contentDigest: "c4", sourceCommit: "x", system: "/nix/store/s4", operation: "switch",
            at: "t")
        let started = Date(timeIntervalSince1970: 1_800_000_000)
        let report = run.reporter.startReport(for: manifest, RunAttempt(startedAt: started, state: state))
        #expect(report.host == "alpha" && report.state == .failed && report.startedAt == UTCTime.iso(started))
        #expect(report.generation == 5 && report.previousGeneration == 4 && report.sourceCommit == "abc")
    }

    @Test func theOutboxSendsOldestFirstEachLogBeforeItsReport() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let outbox = ReportOutbox(stateDirectory: directory.path, log: Self.log())
        try outbox.enqueue([
            ("report-20261204T010000000Z-g2.json", [1]), ("log-20261204T010000000Z-g2.txt", [2]),
            ("report-20261204T000000000Z.json", [3]), ("log-20261204T000000000Z.txt", [4]),
        ])
        #expect(
            outbox.waiting() == [
                "log-20261204T000000000Z.txt", "report-20261204T000000000Z.json", "log-20261204T010000000Z-g2.txt",
                "report-20261204T010000000Z-g2.json",
            ])
        #expect(outbox.contents(of: "log-20261204T000000000Z.txt") == [4])
        outbox.remove("log-20261204T000000000Z.txt")
        #expect(outbox.waiting().count == 3)
    }
}
