import ClientStateStore
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import Testing

@testable import HostAgent

/// `state.json` and `last-run.json`: what an unchanged poll writes, what a crash or a hostile file can do to it.
@Suite("client state on disk")
struct ClientStateTests {
    static func appliedState() -> ClientState {
        var state = ClientState()
        state.lastSeen = .init(generation: 3, contentDigest: "digest-3", snapshotSHA256: "sha-3")
        state.applied = .init(
            generation: 3, contentDigest: "digest-3", sourceCommit: "abc1234", system: "/nix/store/x-system",
            operation: "switch", at: "2026-11-22T08:00:00Z")
        state.lastResult = .applied
        state.lastReason = "generation 3 applied (switch)"
        state.lastRunAt = "2026-11-22T08:00:05Z"
        state.lastContactAt = "2026-11-22T08:00:01Z"
        return state
    }

    static func unchangedPoll(after state: ClientState, at time: String) -> ClientState {
        var next = state
        next.lastResult = .unchanged
        next.lastReason = "generation 3 is applied and current"
        next.lastRunAt = time
        next.lastContactAt = time
        return next
    }

    /// A state file whose generation is not one (0, or beyond 2^53) is refused naming the file and the key,
    /// rather than trapped on or trusted.
    @Test(arguments: [UInt64(0), Generation.maximum + 1, UInt64.max])
    func aStateFileWithAnImpossibleGenerationIsRefusedByName(generation: UInt64) throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        var state = Self.appliedState()
        state.applied?.generation = generation
        try state.save(stateDirectory: directory.path)
        let error = try #require(throws: ClientError.self) { try ClientState.load(stateDirectory: directory.path) }
        #expect(
            error.description.contains(directory.path("state.json"))
                && error.description.contains("applied.generation \(generation) is not a generation"),
            "\(error)")
    }

    @Test func anUnchangedPollLeavesStateJSONAloneAndTheRecordIsReadBack() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let applied = Self.appliedState()
        try applied.save(stateDirectory: directory.path)
        let before = try FileIO.readNoFollow(directory.path("state.json"))
        let inode = try #require(try FileStatus.of(directory.path("state.json"))).inode

        let polled = Self.unchangedPoll(after: applied, at: "2026-11-22T08:05:00Z")
        try polled.save(stateDirectory: directory.path, replacing: applied)

        #expect(try FileIO.readNoFollow(directory.path("state.json")) == before, "state.json is not rewritten")
        #expect(try FileStatus.of(directory.path("state.json"))?.inode == inode)
        #expect(try FileStatus.of(directory.path("last-run.json"))?.kind == .regular)
        #expect(try ClientState.load(stateDirectory: directory.path) == polled)
    }

    @Test func aChangedDecisionGoesToStateJSONAndRetiresTheRecord() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let applied = Self.appliedState()
        try applied.save(stateDirectory: directory.path)
        let polled = Self.unchangedPoll(after: applied, at: "2026-11-22T08:05:00Z")
        try polled.save(stateDirectory: directory.path, replacing: applied)

        var newer = polled
        newer.lastSeen = .init(generation: 4, contentDigest: "digest-4", snapshotSHA256: "sha-4")
        newer.lastResult = .failed
        newer.lastRunAt = "2026-11-22T08:10:00Z"
        try newer.save(stateDirectory: directory.path, replacing: polled)

        #expect(try FileStatus.of(directory.path("last-run.json")) == nil)
        let onDisk = try JSONDecoder().decode(
            ClientState.self, from: Data(try FileIO.readNoFollow(directory.path("state.json"))))
        #expect(onDisk == newer)
        #expect(try ClientState.load(stateDirectory: directory.path) == newer)
    }

    @Test func aFirstRunWithNothingPublishedStillLeavesARecord() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        var state = ClientState()
        state.lastResult = .unchanged
        state.lastRunAt = "2026-11-22T08:00:00Z"
        try state.save(stateDirectory: directory.path, replacing: ClientState())
        #expect(try ClientState.load(stateDirectory: directory.path) == state)
    }

    /// A crash can leave last-run.json empty or old, and anyone with root can put anything there: the record is
    /// then ignored, state.json's own record is used, and nothing it points at is read or changed.
    @Test(arguments: ["empty", "garbage", "not an object", "older", "symlink", "fifo", "directory", "huge"])
    func anUnusableRecordIsIgnoredAndNothingIsLost(_ kind: String) throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let applied = Self.appliedState()
        try applied.save(stateDirectory: directory.path)
        let record = directory.path("last-run.json")
        let newerRecord = #"{"lastResult":"unchanged","lastRunAt":"2026-11-22T09:00:00Z"}"#
        switch kind {
        case "empty": try directory.writeFile("last-run.json", text: "")
        case "garbage": try directory.writeFile("last-run.json", text: "{\"lastRunAt\": \"2026-11-22T09:")
        case "not an object": try directory.writeFile("last-run.json", text: "[1, 2, 3]\n")
        case "older":
            try directory.writeFile(
                "last-run.json", text: #"{"lastResult":"unchanged","lastRunAt":"2026-11-22T07:59:59Z"}"#)
        case "symlink":
            try directory.writeFile("elsewhere.json", text: newerRecord)
            #expect(symlink(directory.path("elsewhere.json"), record) == 0)
        case "fifo": #expect(mkfifo(record, 0o600) == 0)
        case "directory": #expect(mkdir(record, 0o700) == 0)
        default:
            let padding = String(repeating: " ", count: 2 << 20)
            try directory.writeFile("last-run.json", text: newerRecord.dropLast() + ",\"lastReason\":\"\(padding)\"}")
        }
        #expect(try ClientState.load(stateDirectory: directory.path) == applied)
        if kind == "symlink" {
            #expect(try FileIO.readNoFollow(directory.path("elsewhere.json")) == Array(newerRecord.utf8))
        }

        // The next unchanged poll replaces whatever was there with a usable record (a directory stays: the save
        // reports it rather than deleting it).
        let polled = Self.unchangedPoll(after: applied, at: "2026-11-22T08:05:00Z")
        if kind == "directory" {
            #expect(throws: ClientError.self) { try polled.save(stateDirectory: directory.path, replacing: applied) }
        } else {
            try polled.save(stateDirectory: directory.path, replacing: applied)
            #expect(try ClientState.load(stateDirectory: directory.path) == polled)
        }
    }

    /// PIDs repeat after a reboot: a temporary file left by a crashed run with this PID must not block saving.
    @Test func leftoversOfACrashedRunAreRemovedAndDoNotBlockTheNextSave() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let leftovers = [
            FileIO.temporaryPath(for: directory.path("state.json")),
            FileIO.temporaryPath(for: directory.path("last-run.json")),
        ]
        for path in leftovers { try directory.writeFile(String(path.dropFirst(directory.path.count + 1)), text: "{") }
        try directory.writeFile("keep.txt", text: "not ours")
        #expect(throws: ClientError.self) { try Self.appliedState().save(stateDirectory: directory.path) }

        ClientState.removeLeftovers(stateDirectory: directory.path)
        for path in leftovers { #expect(try FileStatus.of(path) == nil, "\(path)") }
        #expect(try FileStatus.of(directory.path("keep.txt"))?.kind == .regular)
        try Self.appliedState().save(stateDirectory: directory.path)
        #expect(try ClientState.load(stateDirectory: directory.path) == Self.appliedState())
    }
}
