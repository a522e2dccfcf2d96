public import BuildGate

extension ResolvedTree {
    /// The files a build reads: the `tree/` part, never the secrets.
    public var buildInputs: [SystemBuilder.SourceFile] {
        let prefix = HostTreeResolver.treePrefix + "/"
        return entries.compactMap { entry in
            guard case .file(let source, _, let sha256) = entry.kind, entry.path.hasPrefix(prefix) else { return nil }
            return SystemBuilder.SourceFile(
                path: String(entry.path.dropFirst(prefix.count)), source: source, sha256: sha256,
                executable: entry.permissions & 0o111 != 0)
        }
    }
}
