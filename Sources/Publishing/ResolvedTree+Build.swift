public import BuildGate

extension ResolvedTree {
    /// The files a build reads: the `tree/` part, never the secrets.
    public var buildInputs: [SystemBuilder.SourceFile] {
        let prefix = HostTreeResolver.treePrefix + "/"
        return entries.compactMap { entry in
            guard entry.path.hasPrefix(prefix) else { return nil }
            let (path, executable) = (String(entry.path.dropFirst(prefix.count)), entry.permissions & 0o111 != 0)
            switch entry.kind {
            case .directory: return nil
            case .file(let source, _, let sha256):
                return SystemBuilder.SourceFile(path: path, source: source, sha256: sha256, executable: executable)
            case .generated(let bytes, let sha256):
                return SystemBuilder.SourceFile(path: path, contents: bytes, sha256: sha256, executable: executable)
            }
        }
    }
}
