public import Foundation

/// The wall clock, as fleet's code reads it: one type, passed in where time decides something (which digests
/// are kept, when a snapshot's grace ends, when a host is silent), so that tests move time instead of
/// sleeping through it.
///
/// In debug builds (the ones the tests run), ``system`` is shifted by `FLEET_TEST_CLOCK_OFFSET_SECONDS`, so
/// a test can run the real `fleet` executable "some seconds later"; a release build ignores the variable.
public struct WallClock: Sendable {
    private let read: @Sendable () -> Int64

    /// A clock reading `nanosecondsSinceEpoch`.
    public init(nanosecondsSinceEpoch read: @escaping @Sendable () -> Int64) {
        self.read = read
    }

    /// The system's real-time clock.
    public static let system: WallClock = {
        let offset = testOffsetNanoseconds
        return WallClock {
            var spec = timespec()
            clock_gettime(CLOCK_REALTIME, &spec)
            return Int64(spec.tv_sec) * UTCTime.nanosecondsPerSecond + Int64(spec.tv_nsec) + offset
        }
    }()

    /// A clock that always reads `date`.
    public static func fixed(_ date: Date) -> WallClock {
        let nanoseconds = Int64((date.timeIntervalSince1970 * 1e9).rounded(.down))
        return WallClock { nanoseconds }
    }

    public var nanosecondsSinceEpoch: Int64 { read() }
    public var secondsSinceEpoch: Int64 { Self.floorDivide(read(), UTCTime.nanosecondsPerSecond) }
    public func now() -> Date { Date(timeIntervalSince1970: Double(read()) / 1e9) }

    /// This clock, `seconds` ahead.
    public func advanced(by seconds: Double) -> WallClock {
        let read = self.read
        let shift = Int64(seconds * 1e9)
        return WallClock { read() + shift }
    }

    private static func floorDivide(_ value: Int64, _ divisor: Int64) -> Int64 {
        value / divisor - (value % divisor < 0 ? 1 : 0)
    }

    private static var testOffsetNanoseconds: Int64 {
        #if FLEET_TEST_CLOCK
            guard let text = ProcessInfo.processInfo.environment["FLEET_TEST_CLOCK_OFFSET_SECONDS"],
                let seconds = Double(text), seconds.isFinite, abs(seconds) < 1e9
            else { return 0 }
            return Int64(seconds * 1e9)
        #else
            return 0
        #endif
    }
}
