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
        let bytes = path.utf8
        guard bytes.starts(with: storeDirectory) else { return nil }
        let base = bytes.dropFirst(storeDirectory.count)
        guard base.count > 33, base.dropFirst(32).first == UInt8(ascii: "-"),
            base.prefix(32).allSatisfy(isBase32), base.dropFirst(33).allSatisfy(isNameByte)
        else { return nil }
        return String(decoding: base.prefix(32), as: UTF8.self)
    }

    /// Whether `text` is a store path's hash part: 32 characters of Nix's base-32. Byte by byte: it runs for
    /// every name in every cache and every reference of every narinfo.
    public static func isHashPart(_ text: some StringProtocol) -> Bool {
        var count = 0
        for byte in text.utf8 {
            guard isBase32(byte) else { return false }
            count += 1
        }
        return count == 32
    }

    private static let storeDirectory = Array("/nix/store/".utf8)

    /// Nix's base-32 digits: `0-9a-z` without `e`, `o`, `u` and `t`.
    private static let base32Digits: [Bool] = {
        var table = [Bool](repeating: false, count: 256)
        for byte in "0123456789abcdfghijklmnpqrsvwxyz".utf8 { table[Int(byte)] = true }
        return table
    }()

    /// What a store path's name may hold: ASCII letters and digits and `+-._?=` (no `/`).
    private static let nameBytes: [Bool] = {
        var table = [Bool](repeating: false, count: 256)
        for byte in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?=".utf8 {
            table[Int(byte)] = true
        }
        return table
    }()

    private static func isBase32(_ byte: UInt8) -> Bool { base32Digits[Int(byte)] }
    private static func isNameByte(_ byte: UInt8) -> Bool { nameBytes[Int(byte)] }
}
