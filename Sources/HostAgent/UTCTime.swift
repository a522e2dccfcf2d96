import Foundation

/// UTC timestamps for state, reports and file names, formatted without a formatter object (cheap, thread-safe).
enum UTCTime {
    /// `2026-11-22T03:16:00Z`.
    static func iso(_ date: Date) -> String {
        let parts = components(date)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
            parts.tm_hour, parts.tm_min, parts.tm_sec)
    }

    /// `20261122T031600123Z` (with milliseconds): sorts by time and is a safe file name.
    static func compact(_ date: Date) -> String {
        let parts = components(date)
        let milliseconds = Int((date.timeIntervalSince1970 * 1000).truncatingRemainder(dividingBy: 1000))
        return String(
            format: "%04d%02d%02dT%02d%02d%02d%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
            parts.tm_hour, parts.tm_min, parts.tm_sec, milliseconds)
    }

    private static func components(_ date: Date) -> tm {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return parts
    }
}
