public import FleetProtocol
import NixKit

/// The `Sig:` lines of a narinfo, reduced to the fleet key's.
///
/// `nix copy --to file://…?secret-key=` writes into the pool every signature the server's store holds for a path
/// besides the fleet key's: those of other caches, of an earlier key by the same name (`fleet-1` after a new
/// `fleet init`), of a fleet key whose host is this server. A host trusts only the fleet key, and Nix verifies
/// every signature whose key name it trusts, on every path it substitutes: eleven signatures named `fleet-1` on
/// each of 1,500 paths cost a host about two seconds of CPU per first apply. Hosts need one signature: the pool
/// keeps the fleet key's.
public enum NarInfoSignatures {
    /// What a narinfo would be with only the signatures that `key` verifies, or nil when it has no other (it is
    /// left as it is). Throws when not one of its signatures is `key`'s: a pool narinfo that `nix copy` has just
    /// signed always has one.
    public static func keepingOnly(_ key: VerifyingKey, in text: String, name: String) throws(BinaryCache.Failure)
        -> String?
    {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let signatures = lines.filter { $0.hasPrefix(signaturePrefix) }
        guard signatures.count > 1 else {
            if let only = signatures.first, !only.dropFirst(signaturePrefix.count).hasPrefix(key.name + ":") {
                throw BinaryCache.Failure(
                    description: "the binary-cache pool's \(name) is not signed by the fleet key \(key.name)")
            }
            return nil
        }
        let fingerprint = Array(try self.fingerprint(of: text, name: name).utf8)
        let kept = lines.filter { line in
            guard line.hasPrefix(signaturePrefix) else { return true }
            return (try? key.verify(signature: String(line.dropFirst(signaturePrefix.count)), of: fingerprint)) != nil
        }
        let valid = kept.count - (lines.count - signatures.count)
        guard valid > 0 else {
            throw BinaryCache.Failure(
                description: "the binary-cache pool's \(name) carries \(signatures.count) signatures, and none is "
                    + "the fleet key \(key.name)'s over what it describes: remove it and publish again")
        }
        return valid == signatures.count ? nil : kept.joined(separator: "\n")
    }

    static let signaturePrefix = "Sig: "

    /// What Nix signs for the store path `text` describes (``NarInfo/fingerprint``).
    static func fingerprint(of text: String, name: String) throws(BinaryCache.Failure) -> String {
        let bytes = Array(text.utf8) + (text.hasSuffix("\n") ? [] : [0x0A])
        let info: NarInfo
        do { info = try NarInfo(parsing: bytes, name: name) } catch {
            throw BinaryCache.Failure(
                description: "the binary-cache pool's \(error.description): remove it and publish again")
        }
        guard let fingerprint = info.fingerprint else {
            throw BinaryCache.Failure(
                description: "the binary-cache pool's \(name) lacks StorePath, NarHash or NarSize: remove it and "
                    + "publish again")
        }
        return fingerprint
    }
}
