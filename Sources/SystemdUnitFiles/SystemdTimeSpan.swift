/// systemd time spans (systemd.time(7)) as unit files take them: `15min`, `1h 30min`, `90s`.
public enum SystemdTimeSpan {
    /// What a refusal says a time span must look like.
    public static let rule =
        "not a systemd time span; use a number and a unit, e.g. 15min, 1h, 1h 30min, 90s (units: us, ms, s, min, h, "
        + "d, w, M, y and their long forms)"

    /// Whole seconds as the shortest systemd time span that says them exactly: `1h`, `15min`, `90s`. The same
    /// function as `timeSpan` in nixos/shared.nix, so that both kinds of host write the same timer.
    public static func shortest(seconds: Int) -> String {
        if seconds > 0 && seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds > 0 && seconds % 60 == 0 { return "\(seconds / 60)min" }
        return "\(seconds)s"
    }

    /// Seconds per systemd time unit (systemd.time(7)), longest names first so that "min" is not read as "m".
    static let timeUnits: [(name: String, seconds: Double)] = [
        ("minutes", 60), ("seconds", 1), ("minute", 60), ("months", 2_629_800), ("second", 1), ("hours", 3600),
        ("month", 2_629_800), ("weeks", 604_800), ("years", 31_557_600), ("usec", 1e-6), ("msec", 1e-3),
        ("hour", 3600), ("days", 86_400), ("week", 604_800), ("year", 31_557_600), ("sec", 1), ("min", 60),
        ("day", 86_400), ("us", 1e-6), ("ms", 1e-3), ("hr", 3600), ("s", 1), ("m", 60), ("h", 3600),
        ("d", 86_400), ("w", 604_800), ("M", 2_629_800), ("y", 31_557_600),
    ]

    /// The length of a systemd time span in seconds ("15min", "1h 30min", "1.5h", "90" for 90 s), or nil when
    /// `text` is not one. The same grammar as `timeSpanPattern` in nixos/shared.nix; no "infinity", no sign.
    public static func seconds(of text: String) -> Double? {
        let scalars = Array(text.unicodeScalars)
        guard !scalars.isEmpty, scalars.count <= 64 else { return nil }
        var index = 0
        var total = 0.0
        var parts = 0
        func skipSpaces() { while index < scalars.count && scalars[index] == " " { index += 1 } }
        func digits() -> String {
            var result = ""
            while index < scalars.count, ("0"..."9").contains(scalars[index]) {
                result.unicodeScalars.append(scalars[index])
                index += 1
            }
            return result
        }
        skipSpaces()
        while index < scalars.count {
            var number = digits()
            guard !number.isEmpty else { return nil }
            if index < scalars.count && scalars[index] == "." {
                index += 1
                let fraction = digits()
                guard !fraction.isEmpty else { return nil }
                number += "." + fraction
            }
            skipSpaces()
            var unitSeconds = 1.0
            let rest = String(String.UnicodeScalarView(scalars[index...]))
            if let unit = timeUnits.first(where: { rest.hasPrefix($0.name) }) {
                index += unit.name.unicodeScalars.count
                unitSeconds = unit.seconds
                // A unit is followed by a space, a digit or the end ("5secs" is not a time span).
                if index < scalars.count && scalars[index] != " " && !("0"..."9").contains(scalars[index]) {
                    return nil
                }
            }
            guard let value = Double(number) else { return nil }
            total += value * unitSeconds
            parts += 1
            skipSpaces()
        }
        return parts > 0 ? total : nil
    }
}
