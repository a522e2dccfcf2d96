extension [UInt8] {
    /// Appends `value` as `String(value, radix: radix)` spells it (radix 2 to 10), without making a String:
    /// for the text built on every publish (content digests, the digest cache).
    mutating func appendDigits(_ value: Int64, radix: Int = 10) {
        if value < 0 { append(UInt8(ascii: "-")) }
        let start = count
        var rest = value.magnitude
        let base = UInt64(radix)
        repeat {
            append(UInt8(ascii: "0") + UInt8(rest % base))
            rest /= base
        } while rest > 0
        self[start...].reverse()
    }
}
