/// A store path's one file in fleet's binary cache: its narinfo, an empty line, then its NAR file's bytes (as
/// the narinfo's `Compression` says). The server's pool keeps one per path (`entries/<hash>`) and each host's
/// `cache/` links exactly those of its closures, named by the path's hash part.
///
/// Not Nix's layout (a narinfo file and a NAR file per path): one file per path halves the names every host's
/// view costs (directory blocks are most of what a host adds beyond links) and the files a host opens. The
/// host splits each entry back into Nix's layout in its local cache, from where Nix substitutes.
///
/// The separator is unambiguous: a narinfo has no empty line (``NarInfo`` refuses one), so the first newline
/// followed by another ends it.
public enum CacheEntry {
    /// The entry's file name for the store path whose hash part is `hash`.
    public static func fileName(ofHashPart hash: String) -> String { hash }

    /// The longest narinfo an entry may start with.
    public static let narinfoLimit = 64 << 10

    /// How much of an entry to read first: a narinfo of a path with up to about 20 references fits, so most
    /// entries cost one read before their NAR.
    public static let firstHeadLength = 2 << 10
    /// How much to read when the first head held no empty line: the longest narinfo and its empty line.
    public static let longestHeadLength = narinfoLimit + 1

    /// Whether a head of `head` bytes of an entry of `size` bytes that ``split(head:)`` could not split may still
    /// hold a narinfo: it was cut short of both the entry's end and ``longestHeadLength``.
    public static func mayHoldLongerNarinfo(headLength: Int, size: Int64) -> Bool {
        headLength < longestHeadLength && Int64(headLength) < size
    }

    /// What an entry file holds before the NAR's bytes: `narinfo` (which ends with a newline) and the empty line.
    public static func header(narinfo: [UInt8]) -> [UInt8] { narinfo + [newline] }

    /// The narinfo at the start of `head` (the first bytes of an entry) and the offset of the NAR's first byte;
    /// nil when `head` holds no empty line yet (a longer head may, up to ``longestHeadLength``).
    public static func split(head: some Collection<UInt8>) -> (narinfo: [UInt8], narOffset: Int)? {
        let bytes = Array(head.prefix(longestHeadLength))
        var index = 0
        while index + 1 < bytes.count {
            if bytes[index] == newline, bytes[index + 1] == newline {
                return (Array(bytes[...index]), index + 2)
            }
            index += 1
        }
        return nil
    }

    private static let newline: UInt8 = 0x0A
}
