/// Makes host-written text safe to print on a terminal.
///
/// Reasons, names and logs come from hosts, which the server does not trust: printed raw, an escape sequence in
/// them could rewrite the sysadmin's screen or title, or hide lines. Control characters (C0 except newline and
/// tab, DEL, C1) and the bidirectional overrides are shown as `\u{…}` instead. JSON output needs none of this
/// (the encoder escapes them).
public enum TerminalText {
    /// Multi-line text (a log): keeps newlines and tabs.
    public static func block(_ text: String) -> String { clean(text, keepLines: true) }

    /// One table cell or message line: newlines become `⏎`, and the result is cut to `limit` characters.
    public static func line(_ text: String, limit: Int = 200) -> String {
        let cleaned = clean(text, keepLines: false)
        return cleaned.count > limit ? String(cleaned.prefix(limit - 1)) + "…" : cleaned
    }

    static func clean(_ text: String, keepLines: Bool) -> String {
        guard text.unicodeScalars.contains(where: { needsEscape($0) || (!keepLines && ($0 == "\n" || $0 == "\t")) })
        else {
            return text
        }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar == "\n" || scalar == "\t" {
                if keepLines {
                    result.append(scalar)
                } else {
                    result.append(contentsOf: (scalar == "\n" ? "⏎" : " ").unicodeScalars)
                }
            } else if needsEscape(scalar) {
                result.append(contentsOf: "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars)
            } else {
                result.append(scalar)
            }
        }
        return String(result)
    }

    static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        return (value < 0x20 && value != 0x0a && value != 0x09) || (0x7f...0x9f).contains(value)
            || (0x202a...0x202e).contains(value) || (0x2066...0x2069).contains(value)
    }
}
