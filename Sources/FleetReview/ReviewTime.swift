import Glibc

/// Times on the review side: nanoseconds since the epoch (as file mtimes give them), ISO 8601 UTC text, and
/// ages for humans. Formatted by hand with `gmtime_r`, because a formatter object per call costs more than the
/// whole row it formats (see bench/README.md).
public enum ReviewTime {
    public static let nanosecondsPerSecond: Int64 = 1_000_000_000

    /// Now, in nanoseconds since the epoch.
    public static func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * nanosecondsPerSecond + Int64(spec.tv_nsec)
    }

    /// `2026-11-22T03:16:00Z`.
    public static func iso(nanoseconds: Int64) -> String {
        var seconds = time_t(nanoseconds / nanosecondsPerSecond - (nanoseconds % nanosecondsPerSecond < 0 ? 1 : 0))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let year = Int(parts.tm_year) + 1900
        let yearText =
            year >= 0 && year < 10000
            ? String(repeating: "0", count: 4 - String(year).count) + String(year) : String(year)
        return
            "\(yearText)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
            + "T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
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

    /// A coarse age for tables: `just now`, `5 min ago`, `3 h ago`, `2 d ago` (coarse, so that `--watch` redraws
    /// when something happened, not every second).
    public static func age(seconds: Int64) -> String {
        if seconds < 60 { return "just now" }
        if seconds < 3600 { return "\(seconds / 60) min ago" }
        if seconds < 2 * 86400 { return "\(seconds / 3600) h ago" }
        return "\(seconds / 86400) d ago"
    }

    /// A duration for messages: `45 min`, `2 h`, `90 s`.
    public static func duration(seconds: Int64) -> String {
        if seconds < 120 { return "\(seconds) s" }
        if seconds < 2 * 3600 { return "\(seconds / 60) min" }
        if seconds < 2 * 86400 { return "\(seconds / 3600) h" }
        return "\(seconds / 86400) d"
    }
}
