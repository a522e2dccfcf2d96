public import FleetFiles
public import FleetProtocol
import Glibc
public import Inventory

/// Turns `hosts/<host>/` (plus `secrets/<host>/`) into a ``ResolvedTree`` of plain directories and files.
///
/// Links are followed only where they stay inside the fleet repository and out of other hosts' trees,
/// `secrets/` and `.git`; broken links, cycles and special files are refused. Hard links are held to the same
/// policy (a file that is also a name under `secrets/` or in another host's tree is refused, see
/// ``HardlinkIndex``), and are read as bytes, so nothing placed in a chroot ever shares an inode with the
/// repository.
public struct HostTreeResolver: Sendable {
    /// Bounds a tree so that a mistake (a link to a huge directory) is refused rather than published.
    public struct Limits: Sendable {
        public var maxEntries: Int
        public var maxBytes: Int64

        public init(maxEntries: Int = 200_000, maxBytes: Int64 = 4 << 30) {
            self.maxEntries = maxEntries
            self.maxBytes = maxBytes
        }
    }

    /// The repository root with links resolved.
    let repository: String
    let limits: Limits
    let digests: FileDigestCache
    let subtrees = SubtreeCache()
    let hardlinks: HardlinkIndex

    /// A resolver whose file digests last as long as it does.
    public init(repository: String, limits: Limits = Limits()) throws(FileSystemError) {
        try self.init(repository: repository, limits: limits, digests: FileDigestCache())
    }

    init(repository: String, limits: Limits, digests: FileDigestCache) throws(FileSystemError) {
        switch FileIO.realPath(repository) {
        case .success(let path): self.repository = path
        case .failure(let error): throw error
        }
        self.hardlinks = HardlinkIndex(repository: self.repository)
        self.limits = limits
        self.digests = digests
    }

    public static let treePrefix = "tree"
    public static let secretsPrefix = "secrets"

    /// Where a host's roles go in its tree: `fleet-roles/<role>/`, imported by the generated `fleet-roles.nix`.
    public static let rolesDirectory = "fleet-roles"
    public static let rolesModule = "fleet-roles.nix"

    /// Resolves one host with its roles (see ``resolve(_:roles:)``).
    public func resolve(_ host: HostConfiguration) throws(ResolutionError) -> ResolvedTree {
        try resolve(host.name, roles: host.roles)
    }

    /// Resolves one host. Every problem found is reported, not just the first.
    ///
    /// `roles` (in import order) are copied from `roles/<role>/` into the tree's `fleet-roles/<role>/`, under the
    /// same link policy as the host's own files, and `fleet-roles.nix` is generated to import them in that order.
    public func resolve(_ host: HostName, roles: [String]) throws(ResolutionError) -> ResolvedTree {
        var walk = Walk(resolver: self, host: host)
        let hostPath = "hosts/\(host.value)"
        do {
            switch try FileStatus.of(repository + "/" + hostPath)?.kind {
            case nil: walk.problems.append(.missingHostDirectory(path: hostPath + "/"))
            case .symbolicLink: walk.problems.append(.hostDirectoryIsLink(path: hostPath))
            case .directory:
                walk.entries.append(.init(path: Self.treePrefix, kind: .directory, permissions: 0o755))
                walk.tree(real: repository + "/" + hostPath, shown: hostPath, archive: Self.treePrefix, ancestors: [])
                if !roles.isEmpty { try walk.roles(roles, hostPath: hostPath) }
            default: walk.problems.append(.specialFile(path: hostPath))
            }
            let secretsPath = "secrets/\(host.value)"
            switch try FileStatus.of(repository + "/" + secretsPath)?.kind {
            case nil: break
            case .symbolicLink:
                walk.problems.append(
                    .linkInSecrets(
                        path: secretsPath, target: (try? FileIO.readLink(repository + "/" + secretsPath)) ?? "?"))
            case .directory:
                walk.entries.append(.init(path: Self.secretsPrefix, kind: .directory, permissions: 0o700))
                walk.secrets(real: repository + "/" + secretsPath, shown: secretsPath, archive: Self.secretsPrefix)
            default: walk.problems.append(.specialFile(path: secretsPath))
            }
        } catch {
            walk.problems.append(.unreadable(path: error.path, reason: error.description))
        }
        if !walk.problems.isEmpty { throw ResolutionError(host: host, problems: walk.problems) }
        let sorted = walk.entries.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
        return ResolvedTree(host: host, entries: sorted)
    }

    /// Which part of the repository a resolved path falls in, for the link policy.
    enum Region: Equatable {
        case outside, allowed, otherHost(String), secrets, git
    }

    func region(of realPath: String, for host: HostName) -> Region {
        guard realPath == repository || realPath.hasPrefix(repository + "/") else { return .outside }
        let relative = realPath.dropFirst(repository.count + 1)
        let components = relative.split(separator: "/", maxSplits: 2)
        guard let first = components.first else { return .allowed }
        if first == ".git" { return .git }
        if first == "secrets" { return .secrets }
        if first == "hosts" {
            guard components.count > 1 else { return .otherHost("(all hosts)") }
            return components[1] == host.value ? .allowed : .otherHost(String(components[1]))
        }
        return .allowed
    }
}

/// The mutable state of resolving one host.
private struct Walk {
    let resolver: HostTreeResolver
    let host: HostName
    var entries: [ResolvedTree.Entry] = []
    var problems: [ResolutionProblem] = []
    var totalBytes: Int64 = 0
    var overLimit = false
    /// Symbolic links and multiply-linked files met so far, to tell whether a directory's walk may be reused
    /// (see ``SubtreeCache``): what the policy says of them depends on the host.
    var linksMet = 0

    init(resolver: HostTreeResolver, host: HostName) {
        self.resolver = resolver
        self.host = host
    }

    /// Walks a directory of the host tree. `real` is its path with links resolved, `shown` how the sysadmin
    /// sees it (through links), `ancestors` the real paths of the directories above (to catch cycles).
    mutating func tree(real: String, shown: String, archive: String, ancestors: Set<String>) {
        let ancestors = ancestors.union([real])
        for name in sortedNames(real, shown: shown) {
            guard !overLimit else { return }
            let path = real + "/" + name
            let shownPath = shown + "/" + name
            let archivePath = archive + "/" + name
            do {
                guard let status = try FileStatus.of(path) else { continue }
                switch status.kind {
                case .directory:
                    add(.init(path: archivePath, kind: .directory, permissions: 0o755))
                    tree(real: path, shown: shownPath, archive: archivePath, ancestors: ancestors)
                case .regular:
                    try addFile(path, shown: shownPath, status: status, archivePath: archivePath, secret: false)
                case .symbolicLink:
                    linksMet += 1
                    try followLink(path, shown: shownPath, archive: archivePath, ancestors: ancestors)
                case .other:
                    problems.append(.specialFile(path: shownPath))
                }
            } catch {
                problems.append(.unreadable(path: shownPath, reason: error.description))
            }
        }
    }

    mutating func followLink(_ path: String, shown: String, archive: String, ancestors: Set<String>)
        throws(FileSystemError)
    {
        let target = try FileIO.readLink(path)
        let resolved: String
        switch FileIO.realPath(path) {
        case .success(let value): resolved = value
        case .failure(let error):
            if error.errno == ELOOP {
                problems.append(.linkCycle(link: shown, target: target))
            } else {
                problems.append(.brokenLink(link: shown, target: target))
            }
            return
        }
        switch resolver.region(of: resolved, for: host) {
        case .outside: problems.append(.linkOutsideRepository(link: shown, target: target)); return
        case .otherHost(let other):
            problems.append(.linkIntoOtherHost(link: shown, target: target, otherHost: other)); return
        case .secrets: problems.append(.linkIntoSecrets(link: shown, target: target)); return
        case .git: problems.append(.linkIntoGitDirectory(link: shown, target: target)); return
        case .allowed: break
        }
        guard let status = try FileStatus.following(resolved) else {
            problems.append(.brokenLink(link: shown, target: target))
            return
        }
        switch status.kind {
        case .directory:
            if ancestors.contains(resolved) || ancestors.contains(where: { $0.hasPrefix(resolved + "/") }) {
                problems.append(.linkCycle(link: shown, target: target))
                return
            }
            add(.init(path: archive, kind: .directory, permissions: 0o755))
            linkedTree(real: resolved, shown: shown, archive: archive, ancestors: ancestors)
        case .regular:
            try addFile(resolved, shown: shown, status: status, archivePath: archive, secret: false)
        default:
            problems.append(.specialFile(path: shown + " -> " + target))
        }
    }

    /// Walks a directory reached through a link, reusing its walk for an earlier host when there is one.
    mutating func linkedTree(real: String, shown: String, archive: String, ancestors: Set<String>) {
        let limits = resolver.limits
        if let subtree = resolver.subtrees.subtree(at: real),
            entries.count + subtree.entries.count <= limits.maxEntries, totalBytes + subtree.bytes <= limits.maxBytes
        {
            // Within the limits, so adding them one by one would not have stopped the walk either.
            if subtree.archive == archive {
                entries += subtree.entries  // The usual case: every host has `common` at the same place.
            } else {
                let oldPrefixLength = subtree.archive.utf8.count
                for entry in subtree.entries {
                    let path = archive + String(decoding: entry.path.utf8.dropFirst(oldPrefixLength), as: UTF8.self)
                    entries.append(.init(path: path, kind: entry.kind, permissions: entry.permissions))
                }
            }
            totalBytes += subtree.bytes
            return
        }
        let (firstEntry, bytesBefore) = (entries.count, totalBytes)
        let (problemsBefore, linksBefore) = (problems.count, linksMet)
        tree(real: real, shown: shown, archive: archive, ancestors: ancestors)
        guard problems.count == problemsBefore, linksMet == linksBefore, !overLimit else { return }
        resolver.subtrees.remember(
            .init(archive: archive, entries: Array(entries[firstEntry...]), bytes: totalBytes - bytesBefore), at: real)
    }

    /// Adds the host's roles: each `roles/<role>/` (a directory, or a link to one, under the link policy) as
    /// `tree/fleet-roles/<role>/`, and the generated `tree/fleet-roles.nix` importing them in order.
    mutating func roles(_ roles: [String], hostPath: String) throws(FileSystemError) {
        let tree = HostTreeResolver.treePrefix
        let (directory, module) = (HostTreeResolver.rolesDirectory, HostTreeResolver.rolesModule)
        for reserved in [directory, module]
        where entries.contains(where: {
            $0.path == tree + "/" + reserved || $0.path.hasPrefix(tree + "/" + reserved + "/")
        }) {
            problems.append(.reservedForRoles(path: hostPath + "/" + reserved))
        }
        add(.init(path: tree + "/" + directory, kind: .directory, permissions: 0o755))
        for role in roles {
            let shown = RoleCatalog.directory + "/" + role
            let real = resolver.repository + "/" + shown
            let archive = tree + "/" + directory + "/" + role
            switch try FileStatus.of(real)?.kind {
            case nil: problems.append(.missingRole(path: shown + "/")); continue
            case .symbolicLink:
                linksMet += 1
                try followLink(real, shown: shown, archive: archive, ancestors: [])
            case .directory:
                add(.init(path: archive, kind: .directory, permissions: 0o755))
                linkedTree(real: real, shown: shown, archive: archive, ancestors: [])
            default: problems.append(.specialFile(path: shown)); continue
            }
            if !entries.contains(where: { $0.path == archive + "/default.nix" }) {
                problems.append(.roleWithoutModule(path: shown + "/default.nix"))
            }
        }
        let bytes = Array(Self.rolesModule(host: host, roles: roles).utf8)
        add(
            .init(
                path: tree + "/" + module, kind: .generated(bytes: bytes, sha256: SHA256Hasher.hex(bytes)),
                permissions: 0o644))
    }

    /// The module importing a host's roles in order: a plain NixOS module (only `imports`), so any host flake
    /// can list it with its other modules.
    static func rolesModule(host: HostName, roles: [String]) -> String {
        let imports = roles.map { "    ./\(HostTreeResolver.rolesDirectory)/\($0)\n" }.joined()
        return """
            # Generated by fleet publish for host \(host.value) from fleet.toml: its roles, in order.
            # Edit fleet.toml or roles/<role>/ in the fleet repository, not this file.
            {
              imports = [
            \(imports)  ];
            }

            """
    }

    /// Walks `secrets/<host>/`: plain files and directories only, no links at all.
    mutating func secrets(real: String, shown: String, archive: String) {
        for name in sortedNames(real, shown: shown) {
            let path = real + "/" + name
            let shownPath = shown + "/" + name
            let archivePath = archive + "/" + name
            do {
                guard let status = try FileStatus.of(path) else { continue }
                switch status.kind {
                case .directory:
                    add(.init(path: archivePath, kind: .directory, permissions: 0o700))
                    secrets(real: path, shown: shownPath, archive: archivePath)
                case .regular:
                    try addFile(path, shown: shownPath, status: status, archivePath: archivePath, secret: true)
                case .symbolicLink:
                    problems.append(.linkInSecrets(path: shownPath, target: (try? FileIO.readLink(path)) ?? "?"))
                case .other:
                    problems.append(.specialFile(path: shownPath))
                }
            } catch {
                problems.append(.unreadable(path: shownPath, reason: error.description))
            }
        }
    }

    mutating func addFile(
        _ path: String, shown: String, status: FileStatus, archivePath: String, secret: Bool
    ) throws(FileSystemError) {
        if status.linkCount > 1 {
            linksMet += 1
            guard checkHardlink(path, shown: shown, status: status, secret: secret) else { return }
        }
        let digest = try resolver.digests.digest(of: path, status: status)
        let permissions: UInt32 = secret ? 0o400 : (status.permissions & 0o111 != 0 ? 0o755 : 0o644)
        totalBytes += status.size
        let kind = ResolvedTree.Kind.file(source: path, identity: status.identity, sha256: digest)
        add(.init(path: archivePath, kind: kind, permissions: permissions))
    }

    /// Whether a multiply-linked file may be published. A tree file may not when another of its names is under
    /// `secrets/` (any host's: secrets never enter the tree) or in another host's tree; a secret may not when
    /// another of its names is among another host's secrets. (A secret also named in a tree refuses the tree's
    /// host, not the secret's owner; a shared file, say in common/, also named in a host's tree is shared
    /// anyway.)
    mutating func checkHardlink(_ path: String, shown: String, status: FileStatus, secret: Bool) -> Bool {
        let relative =
            path.hasPrefix(resolver.repository + "/") ? String(path.dropFirst(resolver.repository.count + 1)) : path
        var allowed = true
        for place in resolver.hardlinks.places(of: status) where place.path != relative {
            switch place.owner {
            case .secrets(let other) where !secret || other != host.value:
                problems.append(.hardlinkIntoSecrets(path: shown, other: place.path))
                allowed = false
            case .tree(let other) where !secret && other != host.value && relative.hasPrefix("hosts/"):
                problems.append(.hardlinkIntoOtherHost(path: shown, other: place.path, otherHost: other))
                allowed = false
            default:
                break
            }
        }
        return allowed
    }

    mutating func add(_ entry: ResolvedTree.Entry) {
        entries.append(entry)
        if !overLimit && (entries.count > resolver.limits.maxEntries || totalBytes > resolver.limits.maxBytes) {
            overLimit = true
            problems.append(
                .tooLarge(limit: "\(resolver.limits.maxEntries) entries or \(resolver.limits.maxBytes) bytes"))
        }
    }

    mutating func sortedNames(_ real: String, shown: String) -> [String] {
        do {
            let names = try FileIO.listDirectory(real)
            if names.contains(where: { $0.contains("\u{FFFD}") }) { problems.append(.nameNotUTF8(directory: shown)) }
            return names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        } catch {
            problems.append(.unreadable(path: shown, reason: error.description))
            return []
        }
    }
}
