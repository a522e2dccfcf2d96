/// What every use of Nix needs, on the server and on the hosts alike.
public enum Nix {
    /// The new CLI and flakes are still experimental in Nix 2.x: enabled per command, so fleet works on hosts
    /// whose nix.conf does not enable them (and never depends on NIX_CONFIG being set by a unit).
    public static let flakeFlags = ["--extra-experimental-features", "nix-command flakes"]

    /// `": <cause>"` from a Nix command's error output, to end a one-line reason: the last `error:` line when
    /// there is one, else the last line that is not the `--show-trace` hint; "" when there is nothing.
    public static func cause(ofFailure standardError: String) -> String {
        let lines = standardError.split(separator: "\n").map { line in
            String(line.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
        }.filter { !$0.isEmpty }
        guard
            let line = lines.last(where: { $0.hasPrefix("error:") })
                ?? lines.last(where: { !$0.hasPrefix("(use '--show-trace'") })
        else { return "" }
        return ": " + String(line.prefix(300))
    }

    /// The 32-character hash part of `/nix/store/<hash>-<name>`, or nil when it is not such a path (nothing
    /// after the name, only Nix's base-32 in the hash and Nix's characters in the name).
    public static func hashPart(ofStorePath path: String) -> String? {
        guard path.hasPrefix("/nix/store/") else { return nil }
        let base = path.dropFirst("/nix/store/".count)
        guard !base.contains("/"), base.count > 33, base.dropFirst(32).first == "-" else { return nil }
        let hash = String(base.prefix(32))
        guard isHashPart(hash),
            base.dropFirst(33).allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-._?=".contains($0)) })
        else { return nil }
        return hash
    }

    /// Whether `text` is a store path's hash part: 32 characters of Nix's base-32.
    public static func isHashPart(_ text: some StringProtocol) -> Bool {
        text.count == 32 && text.allSatisfy { "0123456789abcdfghijklmnpqrsvwxyz".contains($0) }
    }
}
