import FleetProtocol
import FleetTestSupport
import Foundation
import Testing

@Suite("UTC times as fleet writes and reads them")
struct UTCTimeTests {
    @Test func formatsTruncatingToTheSecond() {
        let date = Date(timeIntervalSince1970: 1_795_330_560.9996)  // 2026-11-22T06:56:00.9996Z
        #expect(UTCTime.iso(date) == "2026-11-22T06:56:00Z")
        #expect(UTCTime.iso(nanoseconds: 1_795_330_560_999_600_000) == "2026-11-22T06:56:00Z")
        #expect(UTCTime.compact(date) == "20261122T065600999Z")
        #expect(UTCTime.compact(date, milliseconds: false) == "20261122T065600Z")
        #expect(UTCTime.compact(Date(timeIntervalSince1970: 1_795_330_560.0075)) == "20261122T065600007Z")
        #expect(UTCTime.iso(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        #expect(UTCTime.iso(nanoseconds: -1) == "1969-12-31T23:59:59Z")
    }

    @Test func parsesWhatItWritesAndNothingElse() {
        #expect(UTCTime.parseISO("2026-11-22T06:56:00Z") == 1_795_330_560)
        #expect(UTCTime.parseISO(UTCTime.iso(Date(timeIntervalSince1970: 1_795_330_560))) == 1_795_330_560)
        #expect(UTCTime.parseISO("2026-11-22T06:56:00.123456Z") == 1_795_330_560)
        for hostile in [
            "", "2026-11-22T06:56:00", "2026-11-22 06:56:00Z", "2026-02-31T00:00:00Z", "2026-13-01T00:00:00Z",
            "2026-11-22T24:00:00Z", "1969-12-31T23:59:59Z", "+026-11-22T06:56:00Z", "2026-11-22T06:56:00.Z",
            "2026-11-22T06:56:00.12a4Z", "2026-11-22T06:56:00" + String(repeating: "0", count: 30) + "Z",
        ] {
            #expect(UTCTime.parseISO(hostile) == nil, "\(hostile)")
        }
    }
}
