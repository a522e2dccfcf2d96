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

    /// The narinfo file's name in a cache for the store path whose hash part is `hash`: `<hash>.narinfo`.
    public static func fileName(ofHashPart hash: String) -> String { hash + ".narinfo" }

    public struct Malformed: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Parses `bytes`; `name` is the narinfo's file name, for messages.
    public init(parsing bytes: [UInt8], name: String) throws(Malformed) {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw Malformed(description: "\(name) is not UTF-8")
        }
        var url: String?
        var references: [String] = []
        var referencedPaths: [String] = []
        var storePath: String?
        var fileSize: Int64?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("URL: ") {
                let value = String(line.dropFirst(5))
                let file = value.dropFirst("nar/".count)
                guard value.hasPrefix("nar/"), !file.isEmpty, !file.hasPrefix("."),
                    file.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == ".") })
                else {
                    throw Malformed(
                        description: "\(name) names the nar \(String(reflecting: value)), not a file in nar/")
                }
                url = value
            } else if line.hasPrefix("References:") {
                for reference in line.dropFirst("References:".count).split(separator: " ") {
                    guard let hash = Nix.hashPart(ofStorePath: "/nix/store/" + reference) else {
                        throw Malformed(
                            description: "\(name) has a malformed reference \(String(reflecting: String(reference)))")
                    }
                    references.append(hash)
                    referencedPaths.append("/nix/store/" + reference)
                }
            } else if line.hasPrefix("StorePath: ") {
                // Kept only when well-formed: the host compares it with the path it asked for.
                let value = String(line.dropFirst("StorePath: ".count))
                storePath = Nix.hashPart(ofStorePath: value) != nil ? value : nil
            } else if line.hasPrefix("FileSize: ") {
                guard let value = Int64(line.dropFirst("FileSize: ".count)), value >= 0 else {
                    throw Malformed(description: "\(name) has a malformed FileSize line")
                }
                fileSize = value
            }
        }
        guard let url else { throw Malformed(description: "\(name) has no URL line") }
        self.url = url
        self.references = references
        self.referencedPaths = referencedPaths
        self.storePath = storePath
        self.fileSize = fileSize
    }

    /// The NAR's file name inside `nar/`.
    public var narFile: String { String(url.dropFirst("nar/".count)) }
}
