/// Caps on what one host's `logs/` can make `fleet status` read. Hosts are not trusted: a host that uploads
/// huge, many or strange files gets warnings, and every other host is read as usual.
public struct IngestLimits: Sendable, Equatable {
    /// A report larger than this is refused unread (fleet-client's are a few KiB).
    public var reportBytes = 256 << 10
    /// The heartbeats and `confirmation.json` (a few hundred bytes).
    public var smallFileBytes = 16 << 10
    /// What is kept of a log: its first and last bytes (the start says what was tried, the end how it failed),
    /// read with `pread`, never the middle of a larger file.
    public var logHeadBytes = 256 << 10
    public var logTailBytes = 768 << 10
    /// Directory entries looked at per host and run; past this, the rest of `logs/` is not even listed.
    public var listedNames = 20_000
    /// New reports and logs read per host and run; the rest wait for the next run.
    public var newFilesPerRun = 1_000
    /// A step of a run said to take longer than this (or less than 0) makes the report a lie.
    public var longestDurationSeconds: Double = 7 * 86400

    public init() {}
}
