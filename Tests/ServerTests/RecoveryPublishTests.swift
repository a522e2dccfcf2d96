import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import ServerStore
import Testing

/// The host's heartbeat raises the floor of its next generation (see RecoveryTests for the real hosts): it is
/// the host's upload, so whatever is planted there is read as untrusted, never followed, never waited on, and
/// can move only that host's own generations.
@Suite struct RecoveryPublishTests {
    static func heartbeat(_ host: String, seen: UInt64) -> [UInt8] {
        Heartbeat(
            host: host, at: "2026-12-05T00:00:00Z", appliedGeneration: seen, seenGeneration: seen,
            failedGeneration: nil, lastResult: .refused, reason: "downgrade", rebootNeeded: false
        ).encoded()
    }

    /// The chroot's logs/ (made by `fleet setup` on a real server, which this fixture does not run).
    static func makeLogs(_ path: String) throws {
        if try FileStatus.of(path) == nil { try FileIO.createNewDirectory(path, mode: 0o700) }
    }

    /// Plants `logs/<name>` (a heartbeat slot, or an older client's `heartbeat.json`) for host `a` with `plant`,
    /// changes a's tree, publishes, and returns a's generation and b's (b's heartbeat is always honest and says 5).
    func publishAfterPlanting(
        _ name: String = UploadName.heartbeatName, _ plant: (String) throws -> Void
    ) async throws -> (a: UInt64, b: UInt64) {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        _ = try await fixture.fleet(["publish"])
        for host in ["a", "b"] { try Self.makeLogs(try fixture.layout(host).logs) }
        try FileIO.writeAtomically(
            Self.heartbeat("b", seen: 5), to: try fixture.layout("b").logs + "/" + HeartbeatSlot.a.fileName)
        let path = try fixture.layout("a").logs + "/" + name
        try plant(path)
        try fixture.write("hosts/a/x.nix", "changed\n")
        let output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        return (try fixture.verifiedManifest("a").generation, try fixture.verifiedManifest("b").generation)
    }

    @Test func anHonestHeartbeatRaisesOnlyItsOwnHostsNextGeneration() async throws {
        let generations = try await publishAfterPlanting { path in
            try FileIO.writeAtomically(Self.heartbeat("a", seen: 7), to: path)
        }
        #expect(generations.a == 8, "above what the host has")
        #expect(generations.b == 6, "b's tree did not change, but b has 5: republished above it")
    }

    /// The highest generation of all of a host's heartbeat files counts: both slots and an older client's
    /// `heartbeat.json`; a slot caught half written is passed over.
    @Test func theHighestGenerationAcrossTheSlotsCounts() async throws {
        let generations = try await publishAfterPlanting(HeartbeatSlot.a.fileName) { path in
            let logs = FileIO.split(path).directory
            try FileIO.writeAtomically(Self.heartbeat("a", seen: 7), to: path)
            try FileIO.writeAtomically(Self.heartbeat("a", seen: 9), to: logs + "/" + HeartbeatSlot.b.fileName)
            try FileIO.writeAtomically(Self.heartbeat("a", seen: 3), to: logs + "/" + UploadName.heartbeatName)
        }
        #expect(generations.a == 10, "above slot b's 9")
        #expect(generations.b == 6, "b's slot a says 5")

        let halfWritten = try await publishAfterPlanting(HeartbeatSlot.b.fileName) { path in
            let logs = FileIO.split(path).directory
            try FileIO.writeAtomically(Self.heartbeat("a", seen: 7), to: logs + "/" + HeartbeatSlot.a.fileName)
            try FileIO.writeAtomically(Array(Self.heartbeat("a", seen: 90).prefix(60)), to: path)
        }
        #expect(halfWritten.a == 8, "the other slot's 7")
    }

    @Test(
        arguments: ["link", "fifo", "oversized", "other host", "not JSON", "not a generation", "directory"],
        [UploadName.heartbeatName, HeartbeatSlot.b.fileName])
    func aHostileHeartbeatIsIgnored(_ kind: String, _ name: String) async throws {
        let secret = try TestDirectory.makeTemporary()
        defer { secret.remove() }
        try secret.writeFile("heartbeat.json", text: String(decoding: Self.heartbeat("a", seen: 40), as: UTF8.self))
        let generations = try await publishAfterPlanting(name) { path in
            switch kind {
            case "link": try FileIO.replaceSymlink(path, pointingTo: secret.path("heartbeat.json"))
            case "fifo": #expect(mkfifo(path, 0o600) == 0)
            case "oversized":
                var beat = Self.heartbeat("a", seen: 40)
                beat.removeLast()
                beat += Array(repeating: UInt8(ascii: " "), count: 70 << 10) + [0x0a]
                try FileIO.writeAtomically(beat, to: path)
            case "other host": try FileIO.writeAtomically(Self.heartbeat("b", seen: 40), to: path)
            case "not JSON": try FileIO.writeAtomically(Array("{\"host\": \"a\", \"seenGen".utf8), to: path)
            case "not a generation":
                try FileIO.writeAtomically(Self.heartbeat("a", seen: Generation.maximum + 1), to: path)
            default: try FileIO.createNewDirectory(path, mode: 0o700)
            }
        }
        #expect(generations.a == 2, "\(kind) \(name): a's generations go on from its own")
        #expect(generations.b == 6)
        #expect(try FileIO.read(secret.path("heartbeat.json")).count > 0, "nothing planted is changed")
    }

    @Test func aHeartbeatAtTheLastGenerationRefusesOnlyThatHost() async throws {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        _ = try await fixture.fleet(["publish"])
        try Self.makeLogs(try fixture.layout("a").logs)
        try FileIO.writeAtomically(
            Self.heartbeat("a", seen: Generation.maximum), to: try fixture.layout("a").logs + "/heartbeat.json")
        for host in ["a", "b"] { try fixture.write("hosts/\(host)/x.nix", "changed\n") }
        let output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 1)
        #expect((output.standardOutput + output.standardError).contains("is the last there can be"))
        #expect(try fixture.verifiedManifest("a").generation == 1 && fixture.verifiedManifest("b").generation == 2)
    }
}
