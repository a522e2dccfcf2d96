/// The one rule for entry names, shared by the writer and the extractor so that a snapshot the writer accepts is
/// never refused by a client.
///
/// A name is relative, made of non-empty components separated by single slashes, with no "." or ".." component and
/// no NUL byte. Only a directory may end with one "/" (tar stores directories that way).
///
/// Everything here works on UTF-8 bytes, as the kernel does. Swift's `Character` and `String` comparisons would be
/// wrong: "/" followed by a combining mark is one `Character` that is not "/", so `split(separator: "/")` and
/// `hasPrefix("/")` would miss a slash the kernel sees; and canonically equivalent names compare equal although they
/// name different files.
enum EntryPath {
    private static let slash = UInt8(ascii: "/")
    private static let dot = UInt8(ascii: ".")

    /// The name without its trailing directory slash, or why it is refused (a clause for ``ArchiveError``).
    static func normalize(_ path: String, isDirectory: Bool) -> Result<String, Refusal> {
        var bytes = Array(path.utf8)
        if bytes.isEmpty { return .failure(Refusal("its path is empty")) }
        if bytes.contains(0) { return .failure(Refusal("its path contains a NUL byte")) }
        if bytes.first == slash { return .failure(Refusal("its path is absolute")) }
        if bytes.last == slash {
            guard isDirectory else { return .failure(Refusal("only a directory's path may end with \"/\"")) }
            bytes.removeLast()
        }
        for component in bytes.split(separator: slash, omittingEmptySubsequences: false) {
            switch Array(component) {
            case []: return .failure(Refusal("its path has an empty component"))
            case [dot]: return .failure(Refusal("its path has a \".\" component"))
            case [dot, dot]: return .failure(Refusal("its path has a \"..\" component"))
            default: continue
            }
        }
        return .success(String(decoding: bytes, as: UTF8.self))
    }

    /// The directory holding a normalized name ("" for the top level), as a ``key(_:)``.
    static func parentKey(of relative: String) -> [UInt8] {
        let bytes = Array(relative.utf8)
        guard let last = bytes.lastIndex(of: slash) else { return [] }
        return Array(bytes[..<last])
    }

    /// The last component of a normalized name.
    static func lastComponent(of relative: String) -> String {
        let bytes = Array(relative.utf8)
        guard let last = bytes.lastIndex(of: slash) else { return relative }
        return String(decoding: bytes[(last + 1)...], as: UTF8.self)
    }

    /// The components of a normalized name.
    static func components(of relative: String) -> [String] {
        Array(relative.utf8).split(separator: slash).map { String(decoding: $0, as: UTF8.self) }
    }

    /// A name as the kernel sees it: bytes. `String` equality is canonical equivalence, under which "café" in NFC
    /// and in NFD are equal although they are two different files, so sets of names are keyed by bytes.
    static func key(_ relative: String) -> [UInt8] {
        Array(relative.utf8)
    }

    struct Refusal: Error {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }
}
