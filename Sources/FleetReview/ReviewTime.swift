import FleetProtocol

/// Times on the review side: now in nanoseconds since the epoch (as file mtimes give them), and ages and
/// durations for humans. ISO 8601 text is `UTCTime`'s.
public enum ReviewTime {
    public static let nanosecondsPerSecond: Int64 = 1_000_000_000

    /// Now, in nanoseconds since the epoch, by the system's ``WallClock``.
    public static func now() -> Int64 { WallClock.system.nanosecondsSinceEpoch }

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
