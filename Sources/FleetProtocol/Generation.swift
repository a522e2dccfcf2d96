/// The bounds of a generation number, checked wherever one is read or written.
///
/// Generations count from 1 and stay at most 2^53: every place that holds one represents that exactly
/// (SQLite's signed 64-bit INTEGER, JSON readers that parse numbers as doubles, file names), and no increment
/// or conversion can trap. A value outside is refused where it enters, naming where it came from, so one host's
/// bad data never stops publishing or review for the others.
public enum Generation {
    /// 2^53: far beyond any real fleet (a publish a second for 285 million years).
    public static let maximum: UInt64 = 1 << 53
    public static let range: ClosedRange<UInt64> = 1...maximum

    public static func isValid(_ value: UInt64) -> Bool { range.contains(value) }

    /// Why `value` cannot be a generation, or nil when it can. `what` names it for the message.
    public static func problem(with value: UInt64, _ what: String) -> String? {
        isValid(value) ? nil : "\(what) \(value) is not a generation (1 to 2^53 = \(maximum))"
    }

    /// A generation read from a signed integer store such as SQLite: nil when there is none or when the stored
    /// value is not a valid generation (a database edited by hand, or written by a version without the bound).
    public static func stored(_ value: Int64?) -> UInt64? {
        guard let value, value > 0, let generation = UInt64(exactly: value), isValid(generation) else { return nil }
        return generation
    }

    /// The value to store for a generation that was checked where it entered; never traps.
    public static func storable(_ value: UInt64) -> Int64 { Int64(min(value, maximum)) }
}
