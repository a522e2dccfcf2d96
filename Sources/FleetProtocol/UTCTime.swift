public import Foundation

/// UTC times as fleet writes and reads them: ISO 8601 with whole seconds (`2026-11-22T03:16:00Z`) in manifests,
/// reports, state and the database, and a compact form for file names.
///
/// Formatted by hand with `gmtime_r` (truncating to the second): a formatter object costs more than the row it
/// formats in `fleet status` (see bench/README.md), and these functions are safe from any thread.
public enum UTCTime {
    public static let nanosecondsPerSecond: Int64 = 1_000_000_000

    /// `2026-11-22T03:16:00Z`.
    public static func iso(_ date: Date) -> String {
        iso(seconds: Int64(date.timeIntervalSince1970.rounded(.down)))
    }

    /// `2026-11-22T03:16:00Z` for nanoseconds since the epoch (as file times give them).
    public static func iso(nanoseconds: Int64) -> String {
        iso(seconds: nanoseconds / nanosecondsPerSecond - (nanoseconds % nanosecondsPerSecond < 0 ? 1 : 0))
    }

    /// `20261122T031600123Z` (with milliseconds) or `20261122T031600Z`: sorts by time and is a safe file name.
    public static func compact(_ date: Date, milliseconds: Bool = true) -> String {
        let parts = components(seconds: Int64(date.timeIntervalSince1970.rounded(.down)))
        let stamp =
            "\(year(parts))\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))"
        guard milliseconds else { return stamp + "Z" }
        let millisecond = Int((date.timeIntervalSince1970 * 1000).rounded(.down)) % 1000
        return stamp + String(repeating: "0", count: 3 - String(millisecond).count) + "\(millisecond)Z"
    }

    /// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, or nil for anything else (including
    /// impossible dates such as month 13). Reports are untrusted: this is their only parser.
    public static func parseISO(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20, bytes.count <= 40, bytes.last == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                let byte = bytes[index]
                guard byte >= 48 && byte <= 57 else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            return value
        }
        guard bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"), bytes[10] == UInt8(ascii: "T"),
            bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        if bytes.count > 20 {
            guard bytes[19] == UInt8(ascii: "."), bytes.count > 21, number(20..<(bytes.count - 1)) != nil else {
                return nil
            }
        }
        guard (1970...9999).contains(year), (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60,
            second < 61
        else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = Int64(timegm(&parts))
        // timegm normalises 31 February into March: such a date is not a date.
        guard parts.tm_mday == Int32(day), parts.tm_mon == Int32(month - 1) else { return nil }
        return seconds
    }

    private static func iso(seconds: Int64) -> String {
        let parts = components(seconds: seconds)
        return "\(year(parts))-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
            + "T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }

    private static func components(seconds: Int64) -> tm {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return parts
    }

    private static func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }

    private static func year(_ parts: tm) -> String {
        let year = Int(parts.tm_year) + 1900
        guard year >= 0 && year < 10000 else { return String(year) }
        return String(repeating: "0", count: 4 - String(year).count) + String(year)
    }
}
