/// Byte counts as messages and tables show them: one rule for the whole of fleet, so a size reads the same in
/// `fleet publish`, `fleet gc`, `fleet setup` and a host's refusal.
public enum ByteCount {
    /// Binary units with one decimal past a KiB: "512 B", "1.5 KiB", "391.0 MiB".
    public static func scaled(_ bytes: Int64) -> String {
        guard bytes >= 0 else { return "-" + scaled(Int64(clamping: bytes.magnitude)) }
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        guard unit > 0 else { return "\(bytes) B" }
        let tenths = Int64((value * 10).rounded(.toNearestOrEven))  // as printf's %.1f: 1.25 KiB is "1.2 KiB"
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }

    /// A limit, exactly: "16 MiB", "64 KiB" when it is a whole number of them, else "1000 bytes".
    public static func exact(_ bytes: Int64) -> String {
        if bytes != 0 && bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        if bytes != 0 && bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
        return "\(bytes) bytes"
    }

    /// Mebibytes with at most one decimal and no unit ("12.5"), for columns whose limits are set in MiB.
    public static func mebibytes(_ bytes: UInt64) -> String {
        let tenths = ((bytes >> 10) * 10 + 512) / 1024  // in KiB first: no overflow for any real size
        return tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
    }
}
