import ArchiveKit
import CommandRunner
public import FleetFiles
public import FleetProtocol
public import Foundation
public import Inventory

/// Publishes hosts' resolved trees into their chroots, one host at a time, atomically.
///
/// For each host: resolve the tree; if its content digest equals the current manifest's, leave everything
/// as it is; otherwise write `snapshots/<gen>.tar.zst` under a temporary name, fsync, rename; then write the
/// signed manifest the same way; then record the publication. A crash anywhere leaves the previous
/// manifest and its snapshot in place and valid; the next publish removes the leftovers.
public final class Publisher {
    let configuration: FleetConfiguration
    let signingKey: SigningKey
    let store: StateStore
    let resolver: HostTreeResolver
    let sourceCommit: String

    /// File digests are kept between publishes in the state directory (see ``FileDigestCache``).
    public init(
        configuration: FleetConfiguration, signingKey: SigningKey, store: StateStore, sourceCommit: String,
        limits: HostTreeResolver.Limits = .init()
    ) throws {
        self.configuration = configuration
        self.signingKey = signingKey
        self.store = store
        self.sourceCommit = sourceCommit
        let digests = FileDigestCache(
            storedAt: configuration.server.stateDirectory + "/" + FileDigestCache.fileName)
        self.resolver = try HostTreeResolver(repository: configuration.repository, limits: limits, digests: digests)
    }

    /// The lock that serializes publishes: `<state_dir>/publish.lock`.
    public static func lock(stateDirectory: String) throws -> FileLock {
        let path = stateDirectory + "/publish.lock"
        guard let lock = try FileLock.acquire(path, wait: false) else {
            throw InventoryError("another `fleet publish` holds \(path); wait for it to finish")
        }
        return lock
    }

    /// Publishes `hosts`, calling `progress` after each. Refusals are results, not errors: the other hosts
    /// still publish. Errors thrown are those that stop everything (the chroot root is unusable, …).
    public func publish(
        _ hosts: [HostConfiguration], dryRun: Bool, now: Date = Date(), progress: (PublishResult) -> Void = { _ in }
    ) throws -> [PublishResult] {
        var results: [PublishResult] = []
        for host in hosts {
            let result = try publish(host, dryRun: dryRun, now: now)
            progress(result)
            results.append(result)
        }
        if !dryRun { try resolver.digests.save() }
        return results
    }

    func publish(_ host: HostConfiguration, dryRun: Bool, now: Date) throws -> PublishResult {
        let layout = ChrootLayout(root: configuration.server.chrootRoot, host: host.name)
        let current = currentManifest(layout)
        var result = PublishResult(host: host.name, status: .unchanged, previousGeneration: current.manifest?.generation)
        result.warnings += current.warnings
        let tree: ResolvedTree
        do {
            tree = try resolver.resolve(host.name)
        } catch {
            result.status = .refused
            result.generation = current.manifest?.generation
            result.reason = error.problems.map(\.description).joined(separator: "; ")
            if !dryRun {
                try store.recordEvent(host: host.name, kind: "refused", detail: ["reason": result.reason ?? ""])
            }
            return result
        }
        result.files = tree.fileCount
        result.bytes = tree.byteCount
        let digest = tree.contentDigest(for: host)
        if let manifest = current.manifest, manifest.contentDigest == digest,
            (try? FileStatus.of(layout.snapshot(manifest.generation)))??.size == manifest.snapshot.size
        {
            result.generation = manifest.generation
            if !dryRun {
                // A publish that died after renaming the manifest but before recording it: record it now.
                if try store.lastGeneration(of: host.name) < manifest.generation {
                    try store.record(
                        .init(
                            host: host.name, generation: manifest.generation, publishedAt: manifest.publishedAt,
                            sourceCommit: manifest.sourceCommit, contentDigest: digest,
                            snapshotSHA256: manifest.snapshot.sha256, snapshotSize: manifest.snapshot.size,
                            files: tree.fileCount, bytes: tree.byteCount))
                    result.warnings.append("recorded generation \(manifest.generation), published by an interrupted run")
                }
                try collect(layout, current: manifest.generation, now: now)
            }
            return result
        }
        let generation = try nextGeneration(layout, current: current.manifest)
        if dryRun {
            result.status = .wouldPublish
            result.generation = generation
            return result
        }
        let user = Accounts.user(named: host.unixUser)
        if user == nil {
            result.warnings.append("no Unix user \(host.unixUser) yet: run `fleet setup` so the host can log in and read its snapshot")
        }
        try ChrootProvisioner.ensure(layout, user: user, repair: false)

        let snapshotPath = layout.snapshot(generation)
        let snapshot = try writeSnapshot(tree, to: snapshotPath, host: host.name)
        let manifest = Manifest(
            host: host.name, generation: generation, publishedAt: Timestamp.string(now), sourceCommit: sourceCommit,
            snapshot: .init(
                path: ChrootLayout.snapshotPathInChroot(generation), size: snapshot.size, sha256: snapshot.sha256),
            contentDigest: digest, operation: host.operation.rawValue, attribute: host.attribute)
        try FileIO.writeAtomically(
            try manifest.signed(with: signingKey), to: layout.manifest, mode: 0o644, owner: 0, group: 0,
            beforeRename: { FaultPoint.manifestWritten.trigger(host: host.name.value) })
        FaultPoint.manifestRenamed.trigger(host: host.name.value)
        try store.record(
            .init(
                host: host.name, generation: generation, publishedAt: manifest.publishedAt, sourceCommit: sourceCommit,
                contentDigest: digest, snapshotSHA256: snapshot.sha256, snapshotSize: snapshot.size,
                files: tree.fileCount, bytes: tree.byteCount))
        FaultPoint.recorded.trigger(host: host.name.value)
        try collect(layout, current: generation, now: now)
        result.status = .published
        result.generation = generation
        result.snapshotBytes = snapshot.size
        return result
    }

    /// The manifest currently published for a host, read back without trusting it blindly.
    func currentManifest(_ layout: ChrootLayout) -> (manifest: Manifest?, warnings: [String]) {
        let bytes: [UInt8]
        do {
            guard try FileStatus.of(layout.manifest) != nil else { return (nil, []) }
            bytes = try FileIO.readNoFollow(layout.manifest, limit: Manifest.sizeLimit)
        } catch {
            return (nil, ["cannot read the current manifest (\(error)); publishing a new generation"])
        }
        do {
            let manifest = try Manifest.readUnverified(bytes)
            guard manifest.host == layout.host else {
                return (nil, ["\(layout.manifest) names host \(manifest.host); replacing it"])
            }
            return (manifest, [])
        } catch {
            return (nil, ["\(layout.manifest): \(error); replacing it"])
        }
    }

    /// One more than anything this host has ever had: in state.db, in its manifest, or as a snapshot file.
    func nextGeneration(_ layout: ChrootLayout, current: Manifest?) throws -> UInt64 {
        var highest = max(try store.lastGeneration(of: layout.host), current?.generation ?? 0)
        if try FileStatus.of(layout.snapshots)?.kind == .directory {
            for name in try FileIO.listDirectory(layout.snapshots) {
                if let generation = ChrootLayout.generation(ofSnapshotNamed: name) { highest = max(highest, generation) }
            }
        }
        return highest + 1
    }

    /// Writes the snapshot under a temporary name, makes it durable, renames it into place.
    func writeSnapshot(_ tree: ResolvedTree, to path: String, host: HostName) throws -> (size: Int64, sha256: String) {
        let temporary = FileIO.temporaryPath(for: path)
        do {
            let writer = try SnapshotWriter(path: temporary)
            for entry in tree.entries {
                switch entry.kind {
                case .directory:
                    try writer.addDirectory(entry.path, permissions: entry.permissions)
                case .file(let source, let identity, _):
                    try addFile(entry, from: source, identity: identity, to: writer)
                }
            }
            try writer.finish()
            guard chmod(temporary, ChrootLayout.snapshotFileMode) == 0 else {
                throw FileSystemError("chmod", path: temporary)
            }
            FaultPoint.snapshotWritten.trigger(host: host.value)
            guard rename(temporary, path) == 0 else { throw FileSystemError("rename", path: "\(temporary) -> \(path)") }
            try FileIO.syncDirectory(of: path)
        } catch {
            unlink(temporary)
            throw error
        }
        FaultPoint.snapshotRenamed.trigger(host: host.value)
        guard let status = try FileStatus.of(path) else { throw FileSystemError("stat", path: path) }
        return (status.size, try FileDigestCache.sha256(ofFile: path))
    }

    /// Copies a file into the snapshot if it is still the version that was resolved and hashed: a file
    /// replaced (by a link, say) or written since then stops the publish instead of reaching a chroot.
    func addFile(
        _ entry: ResolvedTree.Entry, from source: String, identity: FileIdentity, to writer: SnapshotWriter
    ) throws {
        let changed = FileSystemError(
            "read", path: source, errno: EAGAIN, detail: "changed after it was resolved; publish again")
        let (fd, status) = try FileIO.openRegularNoFollow(source)
        defer { close(fd) }
        guard status.identity == identity else { throw changed }
        try writer.addFile(entry.path, permissions: entry.permissions, contentsOf: fd, sourcePath: source)
        guard try FileStatus.of(descriptor: fd, path: source).identity == identity else { throw changed }
    }

    func collect(_ layout: ChrootLayout, current: UInt64, now: Date) throws {
        try SnapshotCollector.collect(
            layout, currentGeneration: current, graceSeconds: configuration.server.snapshotGraceSeconds,
            now: Int64(now.timeIntervalSince1970))
    }

    /// The fleet repository's commit, with `-dirty` when it has uncommitted changes, or `none` outside git.
    public static func sourceCommit(repository: String) async -> String {
        guard let head = try? await Command.run("git", ["-C", repository, "rev-parse", "HEAD"]), head.succeeded else {
            return "none"
        }
        let commit = head.standardOutput.trimmingWhitespace()
        let status = try? await Command.run("git", ["-C", repository, "status", "--porcelain", "--", "."])
        return (status?.standardOutput.trimmingWhitespace().isEmpty ?? true) ? commit : commit + "-dirty"
    }
}
