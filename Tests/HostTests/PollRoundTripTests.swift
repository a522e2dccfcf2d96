import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import ServerStore
import Testing

/// The no-change poll writes its heartbeat while it reads the manifest (drafted from the last run's result), in
/// place, into the one of the two heartbeat slots that does not hold the last heartbeat written whole: slot a,
/// then b, then a. A failed write leaves the other slot's heartbeat as the host's and says why; a draft that
/// turns out wrong is replaced in the same slot by the right heartbeat, and a poll that finds something to apply
/// removes it.
///
/// Serialized, and in parallel with the other client suites: see ``ClientRunSuite``.
@Suite("The pipelined no-change poll with a real sshd and Nix", .serialized)
struct PollRoundTripTests: ClientRunSuite {
    static let slotA = HeartbeatSlot.a.fileName
    static let slotB = HeartbeatSlot.b.fileName

    @Test func theHeartbeatAlternatesBetweenItsSlotsAndAFailedWriteSpoilsOnlyItsOwn() async throws {
        let host = "rtthost"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        let logs = try fleet.layout(host).logs
        func newest() throws -> (name: String, heartbeat: Heartbeat) { try HeartbeatFiles.newest(in: logs) }
        func slot(_ name: String) throws -> Heartbeat {
            try JSONDecoder().decode(Heartbeat.self, from: Data(try FileIO.read(logs + "/" + name)))
        }
        func good() throws -> HeartbeatSlot? { try fleet.state(host).heartbeatSlots?[ClientConfiguration.primaryName] }
        func temporaries() throws -> [String] { try fleet.uploaded(host).filter { $0.hasPrefix(".fleet-tmp-") } }

        var output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(try good() == nil && !fleet.uploaded(host).contains(Self.slotA), "applying writes no heartbeat")
        // The first poll after applying drafts "applied" (the last result) into slot a: wrong, so the right one is
        // written into the same slot.
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(try newest().name == Self.slotA && good() == .a)
        #expect(try slot(Self.slotA).lastResult == .unchanged && slot(Self.slotA).appliedGeneration == 1)
        #expect(try !fleet.uploaded(host).contains(Self.slotB))
        // From now on the draft is right, and the slots take turns, each written in place: a slot keeps its inode
        // (a rename would bring a new one).
        var inodes = [Self.slotA: try #require(try FileStatus.of(logs + "/" + Self.slotA)).inode]
        for expected in [HeartbeatSlot.b, .a, .b] {
            output = try await fleet.client(host)
            #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
            let inode = try #require(try FileStatus.of(logs + "/" + expected.fileName)).inode
            #expect(inodes[expected.fileName, default: inode] == inode, "\(expected.fileName) written in place")
            inodes[expected.fileName] = inode
            #expect(!output.standardError.contains("could not write the heartbeat"), "\(output.standardError)")
            #expect(try newest().name == expected.fileName && good() == expected)
            #expect(try newest().heartbeat.reason == "generation 1 is applied and current")
            #expect(try temporaries().isEmpty)
        }
        let review = try await ClientFleet.check(fleet.fixture.fleet(["status", "--json"]), "fleet status")
        #expect(review.standardOutput.contains("\"heartbeats\" : 2"), "both slots ingested: \(review.standardOutput)")
        #expect(review.standardOutput.contains("\"refused\" : 0"), "\(review.standardOutput)")

        // A directory in the next slot (a): the write fails and says so by name, slot b stays the host's
        // heartbeat, and the state still names b, so the next poll tries a again.
        let previous = try FileIO.read(logs + "/" + Self.slotB)
        try FileIO.removeFile(logs + "/" + Self.slotA)
        try FileIO.createNewDirectory(logs + "/" + Self.slotA, mode: 0o755)
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "a heartbeat is no reason to fail the poll: \(output.standardError)")
        #expect(
            output.standardError.contains("could not write the heartbeat: Could not write /logs/\(Self.slotA)"),
            "\(output.standardError)")
        #expect(try FileIO.read(logs + "/" + Self.slotB) == previous, "the previous heartbeat is kept")
        #expect(try newest().name == Self.slotB && good() == .b)
        try FileIO.removeEmptyDirectory(logs + "/" + Self.slotA)
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged && !output.standardError.contains("could not write"))
        #expect(try newest().name == Self.slotA && good() == .a, "repaired by the next poll")

        // The good slot (a) spoiled, as an interrupted write leaves it: the next poll writes b, and the one after
        // writes a whole again.
        for spoiled: [UInt8] in [[], Array(try FileIO.read(logs + "/" + Self.slotA).prefix(40)), Array("garbage".utf8)]
        {
            try Self.overwriteInPlace(logs + "/" + Self.slotA, spoiled)
            output = try await fleet.client(host)
            #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
            #expect(try newest().name == Self.slotB && good() == .b)
            output = try await fleet.client(host)
            #expect(try newest().name == Self.slotA && good() == .a && slot(Self.slotA).lastResult == .unchanged)
        }

        // No manifest on the server: the same result as ever, and the heartbeat says so (drafted wrong first, then
        // right, in the same slot).
        let manifest = try FileIO.read(try fleet.layout(host).manifest)
        unlink(try fleet.layout(host).manifest)
        for expected in [HeartbeatSlot.b, .a] {
            output = try await fleet.client(host)
            #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
            #expect(output.standardError.contains("no manifest on the server"), "\(output.standardError)")
            #expect(try newest().name == expected.fileName)
            #expect(try newest().heartbeat.reason?.contains("no manifest on the server") == true)
            #expect(try temporaries().isEmpty)
        }
        try fleet.plant(host, "/manifest", manifest)
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(try newest().name == Self.slotB && newest().heartbeat.reason == "generation 1 is applied and current")

        // Something new: as before, that poll reports and writes no heartbeat; the slot its draft went to (a) is
        // removed, and slot b, the last good heartbeat, stays as it was.
        let before = try FileIO.read(logs + "/" + Self.slotB)
        try fleet.fixture.write("common/base.nix", "{ motd = [ \"rtt, edited\" ]; }\n")
        try await fleet.publish()
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(try fleet.state(host).applied?.generation == 2)
        #expect(try FileIO.read(logs + "/" + Self.slotB) == before)
        let uploaded = try fleet.uploaded(host)
        #expect(!uploaded.contains(Self.slotA), "\(uploaded)")
        #expect(try good() == .b)
        let left = try temporaries()
        #expect(left.isEmpty, "\(left)")
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(try newest().name == Self.slotA && newest().heartbeat.appliedGeneration == 2)
    }

    /// Writes `bytes` over the file at `path` as an interrupted write leaves it: same inode, same owner.
    static func overwriteInPlace(_ path: String, _ bytes: [UInt8]) throws {
        let descriptor = open(path, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileSystemError("open", path: path) }
        defer { close(descriptor) }
        try FileIO.writeAll(fd: descriptor, bytes, path: path)
    }
}
