/// The rule for `nixosConfigurations.<attribute>`: one place, for fleet.toml (server) and manifests (host).
///
/// Plain characters only, so that the attribute can be put in quotes in a flake reference
/// (`#nixosConfigurations."<attribute>"`) without any escaping; digits may lead (a host named `0`).
public enum NixAttribute {
    public static let rule = "[A-Za-z0-9_][A-Za-z0-9_'-]*, at most 200 characters"

    public static func isValid(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, first != "'" && first != "-", text.utf8.count <= 200 else {
            return false
        }
        return text.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_"
                || $0 == "-" || $0 == "'"
        }
    }
}
