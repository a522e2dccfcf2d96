import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import Testing

/// The ingest of the heartbeat's two slots (``HeartbeatSlot``), written in place by fleet-client: the newest
/// valid heartbeat is the host's, a slot caught half written is no alarm, and a hostile slot is refused as
/// `heartbeat.json` always was. Planted as root straight into the chroot, in place as fleet-client writes them.
@Suite("heartbeat slots at ingest")
struct HeartbeatSlotIngestTests {
    static func beat(_ host: String = "a", pollInterval: Int, edit: (inout Heartbeat) -> Void = { _ in }) -> [UInt8] {
        var beat = Heartbeat(
            host: host, at: "2026-11-22T02:00:00Z", appliedGeneration: 1, seenGeneration: 1, failedGeneration: nil,
            lastResult: .unchanged, reason: "generation 1 is applied and current", rebootNeeded: false)
        beat.pollIntervalSeconds = pollInterval
        edit(&beat)
        return beat.encoded()
    }

    static let slotA = HeartbeatSlot.a.fileName
    static let slotB = HeartbeatSlot.b.fileName

    @Test func onlyTheSlotsAndHeartbeatJSONAreHeartbeats() {
        for name in ["heartbeat-a.json", "heartbeat-b.json", "heartbeat.json"] {
            #expect(UploadName(name) == .heartbeat, "\(name)")
        }
        for name in [
            "heartbeat-c.json", "heartbeat-A.json", "heartbeat-.json", "heartbeat-ab.json", "heartbeat-a.jso",
            "heartbeat-a.json.tmp", "heartbeat-a",
        ] {
            #expect(UploadName(name) == .invalid, "\(name)")
        }
        #expect(HeartbeatSlot.a.other == .b && HeartbeatSlot.b.other == .a)
        #expect(UploadName.heartbeatNames == ["heartbeat-a.json", "heartbeat-b.json", "heartbeat.json"])
    }

    @Test func theNewestSlotIsTheHostsHeartbeatAndAnOlderOneNeverReplacesIt() async throws {
        let review = try await ReviewFixture(hosts: ["a"])
        defer { review.remove() }
        try review.plant("a", Self.slotA, Self.beat(pollInterval: 600))
        try review.age("a", Self.slotA, secondsAgo: 300)
        var snapshot = try await review.refresh()
        #expect(snapshot.ingest.heartbeats == 1 && snapshot.ingest.refused == 0)
        #expect(try review.status(snapshot, "a").pollIntervalSeconds == 600)

        // The next poll writes slot b: the newest, so the host's heartbeat.
        try review.plant("a", Self.slotB, Self.beat(pollInterval: 1200))
        snapshot = try await review.refresh()
        #expect(snapshot.ingest.filesRead == 1, "only the slot that changed")
        #expect(try review.status(snapshot, "a").pollIntervalSeconds == 1200)

        // Slot a changes again but is older than slot b (a copy pulled late, say): read, valid, and not kept.
        try review.plant("a", Self.slotA, Self.beat(pollInterval: 1800))
        try review.age("a", Self.slotA, secondsAgo: 200)
        snapshot = try await review.refresh()
        #expect(snapshot.ingest.filesRead == 1 && snapshot.ingest.heartbeats == 1 && snapshot.ingest.refused == 0)
        var a = try review.status(snapshot, "a")
        #expect(a.pollIntervalSeconds == 1200 && a.warningCount == 0, "\(a)")

        // An older fleet-client's heartbeat.json is still ingested, and kept when it is the newest.
        try FileIO.writeAtomically(
            Self.beat(pollInterval: 2400), to: review.logs("a") + "/" + UploadName.heartbeatName, mode: 0o640)
        snapshot = try await review.refresh()
        a = try review.status(snapshot, "a")
        #expect(snapshot.ingest.heartbeats == 1 && a.pollIntervalSeconds == 2400)
        #expect(a.state == .upToDate && a.warningCount == 0, "\(a)")
    }

    @Test(arguments: ["empty", "a prefix", "a brace"])
    func aHalfWrittenSlotIsNoAlarmAndIsReadAgainOnceWritten(_ kind: String) async throws {
        let review = try await ReviewFixture(hosts: ["a"])
        defer { review.remove() }
        try review.plant("a", Self.slotA, Self.beat(pollInterval: 600))
        try review.age("a", Self.slotA, secondsAgo: 300)
        _ = try await review.refresh()

        let whole = Self.beat(pollInterval: 1200)
        let part: [UInt8] =
            switch kind {
            case "empty": []
            case "a prefix": Array(whole.prefix(whole.count / 2))
            default: Array("{".utf8)
            }
        try review.plant("a", Self.slotB, part)
        var snapshot = try await review.refresh()
        var a = try review.status(snapshot, "a")
        #expect(snapshot.ingest.refused == 0 && a.warningCount == 0, "\(kind): no warning: \(a.warnings)")
        #expect(a.pollIntervalSeconds == 600 && a.state == .upToDate, "\(kind): slot a is the heartbeat")
        snapshot = try await review.refresh()
        #expect(snapshot.ingest.filesRead == 0, "\(kind): not read again while it stays as it is")

        // The write finishes (or the next poll writes the slot again): read, and the host's heartbeat.
        try review.plant("a", Self.slotB, whole)
        snapshot = try await review.refresh()
        a = try review.status(snapshot, "a")
        #expect(snapshot.ingest.filesRead == 1 && snapshot.ingest.heartbeats == 1)
        #expect(a.pollIntervalSeconds == 1200 && a.warningCount == 0, "\(kind): \(a)")
    }

    @Test(arguments: ["symbolic link", "oversized", "another host", "not JSON", "a clientVersion that is none"])
    func aHostileSlotIsRefusedAsHeartbeatJSONIs(_ kind: String) async throws {
        let review = try await ReviewFixture(hosts: ["a", "b"])
        defer { review.remove() }
        try review.plant("a", Self.slotA, Self.beat(pollInterval: 600))
        try review.age("a", Self.slotA, secondsAgo: 300)
        let path = review.logs("a") + "/" + Self.slotB
        let secret = review.fixture.directory.path("secret.json")
        try FileIO.writeAtomically(Self.beat(pollInterval: 1200), to: secret)
        switch kind {
        case "symbolic link": #expect(symlink(secret, path) == 0)
        case "oversized":
            try review.plant("a", Self.slotB, text: "{")
            #expect(truncate(path, 100 << 20) == 0)
        case "another host": try review.plant("a", Self.slotB, Self.beat("b", pollInterval: 1200))
        case "not JSON": try review.plant("a", Self.slotB, text: "hello")
        default: try review.plant("a", Self.slotB, Self.beat(pollInterval: 1200) { $0.clientVersion = "\u{1b}[31m" })
        }
        let snapshot = try await review.refresh()
        let a = try review.status(snapshot, "a")
        #expect(snapshot.ingest.refused == 1 && a.warningCount == 1, "\(kind): \(a.warnings)")
        #expect(a.warnings.allSatisfy { $0.hasPrefix(Self.slotB + ": ") }, "\(kind): \(a.warnings)")
        #expect(a.pollIntervalSeconds == 600, "\(kind): slot a stays the heartbeat")
        #expect(try FileIO.read(secret).count > 0)
    }
}
