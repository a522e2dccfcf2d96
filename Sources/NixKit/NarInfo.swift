/// The parts of a binary cache's `<hash>.narinfo` fleet reads: where the NAR is, and what the path refers to.
///
/// Hosts read narinfo files from the server and the server reads its own: both refuse a URL that could name a
/// file outside the cache's `nar/` and a reference that is not a store path's base name.
public struct NarInfo: Sendable, Equatable {
    /// `nar/<file>`, relative to the cache.
    public let url: String
    /// The hash parts of the referenced store paths.
    public let references: [String]
    /// The referenced store paths, `/nix/store/<hash>-<name>`, in the same order.
    public let referencedPaths: [String]
    /// The store path it describes (`StorePath:`), when given and well-formed.
    public let storePath: String?
    /// The NAR file's size in bytes (`FileSize:`), when given: a download larger than this is refused.
    public let fileSize: Int64?
    /// The NAR file's SHA-256 in Nix's base32 (`FileHash: sha256:…`), when given in that form: a file an earlier
    /// run left is trusted only when its bytes have it.
    public let fileSHA256: String?
    /// The NAR's hash as the narinfo gives it (`NarHash:`, `sha256:<base32>` as Nix writes it), when given.
    public let narHash: String?
    /// The NAR's size in bytes (`NarSize:`), when given as a number.
    public let narSize: Int64?
    /// Whether it has a `References:` line (empty for a path without references): Nix always writes one, so a
    /// narinfo without it is damaged, and the references it seems to have (none) cannot be trusted.
    public let listsReferences: Bool

    /// The narinfo file's name in a cache for the store path whose hash part is `hash`: `<hash>.narinfo`.
    public static func fileName(ofHashPart hash: String) -> String { hash + ".narinfo" }

    public struct Malformed: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Parses `bytes`; `name` is the narinfo's file name, for messages.
    ///
    /// Read as Nix reads it (`NarInfo::NarInfo`): a line ends at each newline byte, its key is what precedes its
    /// first `:`, and its value starts two bytes after that, whatever the byte between. So a line of another form
    /// (`URL:<tab>../x`, a `\r\n` that a `Character` split would not break), a key given twice (Nix keeps the
    /// last; only `Sig` may repeat) and a last line without its newline are refused: the fields checked here are
    /// the ones Nix uses when it reads the same file.
    public init(parsing bytes: [UInt8], name: String) throws(Malformed) {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw Malformed(description: "\(name) is not UTF-8")
        }
        guard bytes.last == Self.newline else {
            throw Malformed(description: "\(name) does not end with a newline")
        }
        var url: String?
        var references: [String] = []
        var referencedPaths: [String] = []
        var storePath: String?
        var fileSize: Int64?
        var fileSHA256: String?
        var narHash: String?
        var narSize: Int64?
        var keys: Set<String> = []
        for (index, raw) in bytes.dropLast().split(separator: Self.newline, omittingEmptySubsequences: false)
            .enumerated()
        {
            guard let colon = raw.firstIndex(of: Self.colon), raw.index(after: colon) < raw.endIndex,
                raw[raw.index(after: colon)] == Self.space
            else {
                throw Malformed(description: "\(name) line \(index + 1) is not of the form \"Key: value\"")
            }
            let key = String(decoding: raw[..<colon], as: UTF8.self)
            let value = String(decoding: raw[raw.index(colon, offsetBy: 2)...], as: UTF8.self)
            guard keys.insert(key).inserted || key == "Sig" else {
                throw Malformed(description: "\(name) gives \(String(reflecting: key)) twice")
            }
            switch key {
            case "URL":
                // Byte by byte (a narinfo is parsed for every path of every closure walked): ASCII letters, digits
                // and dots only, not starting with a dot.
                let file = value.utf8.dropFirst("nar/".count)
                guard value.hasPrefix("nar/"), let first = file.first, first != UInt8(ascii: "."),
                    file.allSatisfy(Self.isNarFileByte)
                else {
                    throw Malformed(
                        description: "\(name) names the nar \(String(reflecting: value)), not a file in nar/")
                }
                url = value
            case "References":
                for bytes in value.utf8.split(separator: Self.space) {
                    let path = "/nix/store/" + String(decoding: bytes, as: UTF8.self)
                    guard let hash = Nix.hashPart(ofStorePath: path) else {
                        throw Malformed(
                            description:
                                "\(name) has a malformed reference \(String(reflecting: String(path.dropFirst(11))))")
                    }
                    references.append(hash)
                    referencedPaths.append(path)
                }
            case "StorePath":
                // Kept only when well-formed: the host compares it with the path it asked for.
                storePath = Nix.hashPart(ofStorePath: value) != nil ? value : nil
            case "FileSize":
                guard let size = Int64(value), size >= 0 else {
                    throw Malformed(description: "\(name) has a malformed FileSize line")
                }
                fileSize = size
            case "FileHash":
                let digest = value.dropFirst("sha256:".count)
                fileSHA256 = value.hasPrefix("sha256:") && NixBase32.isSHA256(digest) ? String(digest) : nil
            case "NarHash":
                narHash = value
            case "NarSize":
                narSize = Int64(value).flatMap { $0 >= 0 ? $0 : nil }
            default:
                break
            }
        }
        guard let url else { throw Malformed(description: "\(name) has no URL line") }
        self.url = url
        self.references = references
        self.referencedPaths = referencedPaths
        self.storePath = storePath
        self.fileSize = fileSize
        self.fileSHA256 = fileSHA256
        self.narHash = narHash
        self.narSize = narSize
        self.listsReferences = keys.contains("References")
    }

    private static let (newline, colon, space): (UInt8, UInt8, UInt8) = (0x0A, 0x3A, 0x20)

    private static func isNarFileByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: ".")
    }

    /// The NAR's file name inside `nar/`.
    public var narFile: String { String(url.dropFirst("nar/".count)) }

    /// What a `Sig:` line signs (Nix's `ValidPathInfo::fingerprint`): `1;<path>;<NarHash>;<NarSize>;<references as
    /// store paths, sorted, comma-separated>`; nil without a well-formed StorePath, a NarHash or a NarSize.
    public var fingerprint: String? {
        guard let storePath, let narHash, let narSize else { return nil }
        return "1;\(storePath);\(narHash);\(narSize);\(referencedPaths.sorted().joined(separator: ","))"
    }
}
