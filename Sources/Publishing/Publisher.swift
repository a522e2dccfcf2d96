import ArchiveKit
import BuildGate
import CommandRunner
public import FleetFiles
public import FleetProtocol
public import Foundation
public import Inventory
public import ServerStore

/// Publishes hosts' resolved trees into their chroots, one host at a time, atomically.
///
/// For each host: resolve the tree; if its content digest equals the current manifest's, leave everything
/// as it is; otherwise write `snapshots/<gen>.tar.zst` under a temporary name, fsync, rename; then write the
/// signed manifest the same way; then record the publication. A crash anywhere leaves the previous
/// manifest and its snapshot in place and valid; the next publish removes the leftovers.
///
/// Resolving and comparing (a ``HostPlan``) only reads, so it runs on every core, a few hosts ahead of the
/// one being written; writing, recording and reporting stay one host at a time, in the order given.
///
/// Everything that shapes a publish is given at `init` (``PublishOptions``), and everything it found is
/// returned (``PublishRun``): a publisher holds no state that changes between or during publishes.
public struct Publisher {
    let configuration: FleetConfiguration
    let signingKey: SigningKey
    let store: StateStore
    let resolver: HostTreeResolver
    /// Builds hosts whose settings ask for it (`build`, `cache`) or all, with ``PublishOptions/forceBuild``.
    let builder: SystemBuilder
    public let options: PublishOptions
    /// The cache entries' narinfos read by this publish's collections: the hosts' caches share the pool's entries.
    let entryReferences = EntryReferences()
    /// Finds the commit the manifests name; called once per publish, when its first host is published.
    let findSourceCommit: @Sendable () async -> String

    public init(
        configuration: FleetConfiguration, signingKey: SigningKey, store: StateStore, sourceCommit: String,
        options: PublishOptions = .init(), limits: HostTreeResolver.Limits = .init()
    ) throws {
        try self.init(
            configuration: configuration, signingKey: signingKey, store: store, sourceCommit: { sourceCommit },
            options: options, limits: limits)
    }

    /// `sourceCommit` is called only if a host is published: a publish that changes nothing (most of them)
    /// does not run `git`. File digests are kept between publishes in the state directory
    /// (see ``FileDigestCache``).
    public init(
        configuration: FleetConfiguration, signingKey: SigningKey, store: StateStore,
        sourceCommit: @escaping @Sendable () async -> String, options: PublishOptions = .init(),
        limits: HostTreeResolver.Limits = .init()
    ) throws {
        self.configuration = configuration
        self.signingKey = signingKey
        self.store = store
        self.findSourceCommit = sourceCommit
        self.options = options
        self.builder = SystemBuilder(stateDirectory: configuration.server.stateDirectory)
        let digests = FileDigestCache(
            storedAt: configuration.server.stateDirectory + "/" + FileDigestCache.fileName)
        self.resolver = try HostTreeResolver(repository: configuration.repository, limits: limits, digests: digests)
    }

    /// The lock that serializes publishes: `<state_dir>/publish.lock`.
    public static func lock(stateDirectory: String) throws -> FileLock {
        let path = stateDirectory + "/publish.lock"
        guard let lock = try FileLock.acquire(path, wait: false) else {
            throw InventoryError(
                "another `fleet publish` (or `fleet update`, `fleet gc`, a rollout) holds \(path); wait for it to finish"
            )
        }
        return lock
    }

    /// Publishes `hosts`, calling `progress` after each, in order. Refusals are results, not errors: the other
    /// hosts still publish. Errors thrown are those that stop everything (the chroot root is unusable, …).
    public func publish(
        _ hosts: [HostConfiguration], now: Date = WallClock.system.now(),
        progress: (PublishResult) -> Void = { _ in }
    ) async throws -> PublishRun {
        let dryRun = options.dryRun
        let recorded = dryRun ? [:] : try store.lastGenerations()
        let buildFailures = try store.buildFailures()
        let rollout = try RolloutContext(configuration: configuration, store: store, dryRun: dryRun)
        let resolver = self.resolver
        let chrootRoot = configuration.server.chrootRoot
        let verify = options.verifySnapshots
        // Enough plans in flight to keep every core busy while one host is written, and no more: a plan's
        // files are read again when its snapshot is written, and the gap should stay short.
        let lookahead = 4 * max(1, ProcessInfo.processInfo.activeProcessorCount)
        var results: [PublishResult] = []
        results.reserveCapacity(hosts.count)
        // Found with the first host published, then the same for all of this run's manifests.
        var sourceCommit: String?
        try await withThrowingTaskGroup(of: (Int, HostPlan).self) { group in
            var planned = 0
            while planned < min(lookahead, hosts.count) {
                let (index, host) = (planned, hosts[planned])
                group.addTask {
                    (index, HostPlan(host, chrootRoot: chrootRoot, resolver: resolver, verifySnapshots: verify))
                }
                planned += 1
            }
            var waiting: [Int: HostPlan] = [:]
            while let (index, plan) = try await group.next() {
                waiting[index] = plan
                while let plan = waiting.removeValue(forKey: results.count) {
                    var result = try await publish(
                        plan, now: now, recorded: recorded, buildFailures: buildFailures, rollout: rollout,
                        sourceCommit: &sourceCommit)
                    if !dryRun { renew(&result, layout: plan.layout, now: now) }
                    progress(result)
                    results.append(result)
                    if planned < hosts.count {
                        let (index, host) = (planned, hosts[planned])
                        group.addTask {
                            (index, HostPlan(host, chrootRoot: chrootRoot, resolver: resolver, verifySnapshots: verify))
                        }
                        planned += 1
                    }
                }
            }
        }
        var warnings: [String] = []
        if !dryRun {
            do {
                try resolver.digests.save()
            } catch {
                // The hosts are published; only the next run is slower.
                warnings.append("could not keep the file digests for the next publish: \(error)")
            }
            // The pool's files that no host links since this publish (superseded closures, a host whose cache
            // failed after its copy into the pool). Still under the publish lock.
            CachePool(chrootRoot: chrootRoot).collect()
        }
        return PublishRun(results: results, warnings: warnings, dryRun: dryRun)
    }

    /// Publishes one host from its plan. `recorded` is each host's last generation in state.db before this run,
    /// `buildFailures` the build gate's memory of trees that did not build; `rollout` the rollout's state when
    /// rings are configured; `sourceCommit` is the run's commit, found here when the first host is published.
    func publish(
        _ plan: HostPlan, now: Date, recorded: [String: UInt64], buildFailures: [String: StateStore.BuildFailure],
        rollout: RolloutContext?, sourceCommit: inout String?
    ) async throws -> PublishResult {
        let dryRun = options.dryRun
        let (host, layout, current) = (plan.host, plan.layout, plan.manifest)
        var result = PublishResult(host: host.name, status: .unchanged, previousGeneration: current?.generation)
        result.warnings += plan.warnings
        // A host without a key cannot log in to fetch what would be published (and `fleet setup` refuses it):
        // refused like any host that cannot be published, saying how to add the key.
        guard host.publicKey != nil else {
            result.status = .refused
            result.generation = current?.generation
            result.reason = Self.missingKeyReason(host, file: configuration.file)
            if !dryRun {
                try store.recordEvent(host: host.name, kind: .refused, detail: ["reason": result.reason ?? ""])
            }
            return result
        }
        var (tree, digest, isUnchanged): (ResolvedTree, String, Bool)
        switch plan.resolution {
        case .resolved(let resolved, let contentDigest, let unchanged):
            (tree, digest, isUnchanged) = (resolved, contentDigest, unchanged)
        case .refused(let error):
            result.status = .refused
            result.generation = current?.generation
            result.reason = error.problems.map(\.description).joined(separator: "; ")
            if !dryRun {
                try store.recordEvent(host: host.name, kind: .refused, detail: ["reason": result.reason ?? ""])
            }
            return result
        }
        result.files = tree.fileCount
        result.bytes = tree.byteCount
        // Repaired, the current generation stands (unless the host reports a higher one); otherwise a new generation
        // is published. A dry run previews the repair the publish makes, as for a staged snapshot.
        if let manifest = current, plan.snapshotDamaged,
            try repairSnapshot(of: manifest, from: tree, layout: layout, staged: false, result: &result) || dryRun
        {
            isUnchanged = (plan.reportedGeneration ?? 0) <= manifest.generation
        }
        if let reported = plan.reportedGeneration, reported > (current?.generation ?? 0) {
            result.warnings.append(
                "the host reports generation \(reported), above the \(current.map { "published \($0.generation)" } ?? "none published"): "
                    + "the server's state was lost or restored from an older backup, so the next generation is above it"
            )
        }
        if let manifest = current, isUnchanged {
            result.generation = manifest.generation
            result.toplevel = manifest.toplevel
            if !dryRun {
                // A publish that died after renaming the manifest but before recording it: record it now.
                if recorded[host.name.value, default: 0] < manifest.generation {
                    try store.record(
                        .init(
                            host: host.name, generation: manifest.generation, publishedAt: manifest.publishedAt,
                            sourceCommit: manifest.sourceCommit, contentDigest: digest,
                            snapshotSHA256: manifest.snapshot.sha256, snapshotSize: manifest.snapshot.size,
                            files: tree.fileCount, bytes: tree.byteCount, toplevel: manifest.toplevel,
                            hasCache: manifest.hasCache))
                    result.warnings.append(
                        "recorded generation \(manifest.generation), published by an interrupted run")
                }
                // Its configuration is the published one again: a failure remembered for another tree is over.
                if buildFailures[host.name.value] != nil { try store.forgetBuildFailure(of: host.name) }
                // And a generation staged for a later ring is void: the host has what the repository says. (Unless
                // it is that very generation, written into the chroot by a step killed before it said so.)
                if let rollout, let row = rollout.rows[host.name.value], !row.delivered {
                    if row.generation == manifest.generation {
                        try rollout.store.markDelivered(host.name.value, generation: row.generation, run: rollout.run)
                    } else {
                        try rollout.store.remove(host.name.value)
                    }
                }
                var restored = false
                if host.cache, manifest.hasCache, let toplevel = manifest.toplevel {
                    restored = await restoreCache(of: toplevel, layout: layout, result: &result)
                }
                // A cache made again is collected as a published one is: what the old one held goes.
                try collect(
                    layout, current: manifest.generation, now: now, published: restored, rollout: rollout,
                    warnings: &result.warnings)
            }
            return result
        }
        // A generation of this very tree waits for the host's ring: nothing new to publish.
        if let rollout, let staged = rollout.stagedManifest(of: host.name.value), staged.contentDigest == digest,
            try stagedSnapshotIsIntact(
                staged, tree: tree, layout: layout, verify: options.verifySnapshots, dryRun: dryRun, result: &result)
        {
            result.status = .staged
            result.generation = current?.generation
            result.reason = rollout.waitingNote(host.name, generation: staged.generation)
            guard !dryRun else { return result }
            // The rollout reached its ring, and a killed publish or step did not write its manifest: now.
            if rollout.hasReached(host.name) {
                let fresh = Self.fresh(
                    try rollout.store.host(host.name.value)?.manifest ?? [], signingKey: signingKey,
                    ttlSeconds: configuration.server.manifestTTLSeconds, now: now)
                if let problem = fresh.problem { result.warnings.append("\(host.name): \(problem)") }
                try FileIO.writeAtomically(fresh.manifest, to: layout.manifest, mode: 0o644, owner: 0, group: 0)
                try rollout.store.markDelivered(host.name.value, generation: staged.generation, run: rollout.run)
                (result.status, result.generation, result.reason) = (.published, staged.generation, nil)
                result.sourceCommit = staged.sourceCommit
            }
            try collect(
                layout, current: result.generation ?? 0, now: now, published: false, rollout: rollout,
                warnings: &result.warnings)
            return result
        }
        let generation: UInt64
        let floor = max(plan.reportedGeneration ?? 0, options.minimumGeneration.map { $0 - 1 } ?? 0)
        switch try nextGeneration(layout, current: current, floor: floor) {
        case .success(let next): generation = next
        case .failure(let refusal):
            // This host alone: the others still publish.
            result.status = .refused
            result.generation = current?.generation
            result.reason = refusal.description
            if !dryRun {
                try store.recordEvent(host: host.name, kind: .refused, detail: ["reason": refusal.description])
            }
            return result
        }
        let gated = options.forceBuild || host.build || host.cache
        // The build gate's memory: the same tree failed before, so building it again would fail again (and
        // announce it again). `--build` (or `fleet build`) tries it anyway, e.g. after fixing the server.
        let knownFailure = buildFailures[host.name.value].flatMap { failure in
            (host.build || host.cache) && !options.forceBuild
                && failure.treeDigest == SystemBuilder.treeDigest(tree.buildInputs) ? failure : nil
        }
        if let knownFailure {
            result.status = dryRun ? .wouldFail : .stillFailing
            result.generation = current?.generation
            result.buildLog = knownFailure.log
            result.reason =
                "did not build at \(knownFailure.failedAt) and is unchanged since, so generation "
                + "\(current.map { String($0.generation) } ?? "none") stays: \(knownFailure.reason ?? "unknown reason") "
                + "(log: \(knownFailure.log ?? "none")); not built again until it changes, or with "
                + "`fleet publish --build`"
            return result
        }
        if dryRun {
            return await dryRunResult(result, host: host, tree: tree, generation: generation, current: current)
        }
        // The build gate: a host whose configuration does not build keeps its generation.
        var toplevel: String?
        if gated {
            let build = await builder.build(host, files: tree.buildInputs)
            try store.record(build)
            result.buildLog = build.log
            guard build.succeeded, let built = build.toplevel else {
                result.status = .buildFailed
                result.generation = current?.generation
                result.reason =
                    "did not build, so generation \(current.map { String($0.generation) } ?? "none") stays: \(build.reason ?? "unknown reason") (log: \(build.log ?? "none"))"
                return result
            }
            toplevel = built
            result.toplevel = built
        }
        let user = Accounts.user(named: host.unixUser)
        if user == nil {
            result.warnings.append(
                "no Unix user \(host.unixUser) yet: run `fleet setup` so the host can log in and read its snapshot")
        }
        try ChrootProvisioner.ensure(layout, user: user, repair: false)
        if host.cache, let toplevel {
            do {
                try await fillCache(of: toplevel, layout: layout)
            } catch {
                result.status = .buildFailed
                result.generation = current?.generation
                result.reason =
                    "built, but \(error); generation \(current.map { String($0.generation) } ?? "none") stays"
                try store.recordEvent(host: host.name, kind: .buildFailed, detail: ["reason": error.description])
                return result
            }
        }

        let snapshotPath = layout.snapshot(generation)
        let snapshot = try writeSnapshot(tree, to: snapshotPath, host: host.name)
        if sourceCommit == nil { sourceCommit = await findSourceCommit() }
        let sourceCommit = sourceCommit ?? "none"
        let manifest = Manifest(
            host: host.name, generation: generation, publishedAt: UTCTime.iso(now), sourceCommit: sourceCommit,
            snapshot: .init(
                path: ChrootLayout.snapshotPathInChroot(generation), size: snapshot.size, sha256: snapshot.sha256),
            contentDigest: digest, operation: host.operation, attribute: host.attribute, toplevel: toplevel,
            hasCache: host.cache && toplevel != nil,
            expiresAt: Manifest.expiry(ttlSeconds: configuration.server.manifestTTLSeconds, now: now))
        let publication = StateStore.Publication(
            host: host.name, generation: generation, publishedAt: manifest.publishedAt, sourceCommit: sourceCommit,
            contentDigest: digest, snapshotSHA256: snapshot.sha256, snapshotSize: snapshot.size,
            files: tree.fileCount, bytes: tree.byteCount, toplevel: toplevel, hasCache: manifest.hasCache)
        if let rollout {
            // Staged first (in state.db, which no host reads), then written into the chroot only if the host's
            // ring has the rollout: the first ring, as this publish starts a new one. A crash in between leaves a
            // staged row that the next rollout step delivers.
            try store.record(publication)
            FaultPoint.recorded.trigger(host: host.name.value)
            let signed = try manifest.signed(with: signingKey)
            try rollout.store.stage(
                run: rollout.run, host: host.name.value, generation: generation,
                previousGeneration: current?.generation, manifest: signed, now: now)
            FaultPoint.staged.trigger(host: host.name.value)
            if rollout.configuration.ringIndex(of: host.name) == 0 {
                try FileIO.writeAtomically(
                    signed, to: layout.manifest, mode: 0o644, owner: 0, group: 0,
                    beforeRename: { FaultPoint.manifestWritten.trigger(host: host.name.value) })
                FaultPoint.manifestRenamed.trigger(host: host.name.value)
                try rollout.store.markDelivered(host.name.value, generation: generation)
                try collect(
                    layout, current: generation, now: now, published: true, rollout: rollout, warnings: &result.warnings
                )
                result.status = .published
            } else {
                try collect(
                    layout, current: current?.generation ?? 0, now: now, published: true, rollout: rollout,
                    warnings: &result.warnings)
                result.status = .staged
                result.reason = rollout.waitingNote(host.name, generation: generation)
                result.generation = current?.generation
                result.sourceCommit = sourceCommit
                result.snapshotBytes = snapshot.size
                return result
            }
            result.generation = generation
            result.sourceCommit = sourceCommit
            result.snapshotBytes = snapshot.size
            return result
        }
        try FileIO.writeAtomically(
            try manifest.signed(with: signingKey), to: layout.manifest, mode: 0o644, owner: 0, group: 0,
            beforeRename: { FaultPoint.manifestWritten.trigger(host: host.name.value) })
        FaultPoint.manifestRenamed.trigger(host: host.name.value)
        try store.record(publication)
        FaultPoint.recorded.trigger(host: host.name.value)
        try collect(layout, current: generation, now: now, published: true, warnings: &result.warnings)
        result.status = .published
        result.generation = generation
        result.sourceCommit = sourceCommit
        result.snapshotBytes = snapshot.size
        return result
    }

    /// Re-signs the host's manifest when its expiry is less than half the TTL away, whatever this publish did
    /// (unchanged, refused, held back by the build gate or a rollout: the host keeps fetching that manifest).
    func renew(_ result: inout PublishResult, layout: ChrootLayout, now: Date) {
        let renewal = ManifestRenewal(
            signingKey: signingKey, ttlSeconds: configuration.server.manifestTTLSeconds, now: now)
        let renewed = renewal.renewChrootManifest(layout)
        if renewed.resigned { result.resigned = true }
        if let problem = renewed.problem { result.warnings.append(problem) }
    }

    /// A staged manifest about to be written into a chroot, re-signed first when it is due (it was signed when
    /// it was staged, which may be days before its ring is reached). When it cannot be, it is written as it is
    /// (the host then refuses it as stale or unsigned, which `fleet status` shows) and `problem` says why.
    static func fresh(_ staged: [UInt8], signingKey: SigningKey, ttlSeconds: Int, now: Date) -> (
        manifest: [UInt8], problem: String?
    ) {
        let renewal = ManifestRenewal(signingKey: signingKey, ttlSeconds: ttlSeconds, now: now)
        do {
            return (try renewal.renewed(staged) ?? staged, nil)
        } catch {
            return (
                staged, "its staged manifest could not be re-signed (\(error)); `fleet publish --refresh` tries again"
            )
        }
    }

    /// What `--dry-run` says of a changed host. Without the build gate it would be published. With it, only a
    /// build can tell: `--build` builds it now (into the build cache under the state directory, nothing else),
    /// an earlier build of the same tree (`fleet build`) is reused, and otherwise it says it would build.
    func dryRunResult(
        _ result: PublishResult, host: HostConfiguration, tree: ResolvedTree, generation: UInt64, current: Manifest?
    ) async -> PublishResult {
        var result = result
        result.generation = generation
        result.status = .wouldPublish
        guard options.forceBuild || host.build || host.cache else { return result }
        if let built = builder.existingResult(for: host.name, files: tree.buildInputs) {
            result.toplevel = built
            return result
        }
        guard options.forceBuild else {
            result.status = .wouldBuild
            result.reason =
                "published only if it builds (build gate); `fleet publish --dry-run --build` or `fleet build "
                + "\(host.name)` builds it now"
            return result
        }
        let build = await builder.build(host, files: tree.buildInputs)
        result.buildLog = build.log
        guard build.succeeded, let built = build.toplevel else {
            result.status = .wouldFail
            result.generation = current?.generation
            result.reason =
                "does not build, so generation \(current.map { String($0.generation) } ?? "none") would stay: "
                + "\(build.reason ?? "unknown reason") (log: \(build.log ?? "none"))"
            return result
        }
        result.toplevel = built
        return result
    }

    /// Why a host without an SSH key is not published, and how to add one.
    public static func missingKeyReason(_ host: HostConfiguration, file: String) -> String {
        "host \(host.name) has no SSH key in \(file), so it could not log in to fetch its configuration: set "
            + "key = \"<the host's /etc/ssh/ssh_host_ed25519_key.pub>\" (or key_file = \"keys/\(host.name).pub\") in "
            + "[hosts.\(host.name)], then run `fleet setup`"
    }

    /// One more than anything this host has ever had: in state.db, in its manifest, or as a snapshot file;
    /// a refusal of this host when that is not a generation (state.db holds a bad value, or the bound is reached).
    /// `floor`: a generation the next one must exceed though the server has no trace of it (the host reported it,
    /// or `--min-generation` names the one after it).
    func nextGeneration(
        _ layout: ChrootLayout, current: Manifest?, floor: UInt64 = 0
    ) throws -> Result<UInt64, ServerStoreError> {
        try Self.nextGeneration(layout, current: current, store: store, floor: floor)
    }

    /// ``nextGeneration(_:current:floor:)`` for callers without a publisher (`fleet rollout abort`).
    static func nextGeneration(
        _ layout: ChrootLayout, current: Manifest?, store: StateStore, floor: UInt64 = 0
    ) throws -> Result<UInt64, ServerStoreError> {
        var highest: UInt64
        do {
            highest = max(try store.lastGeneration(of: layout.host), current?.generation ?? 0, floor)
        } catch let error as ServerStoreError {
            return .failure(error)
        }
        if try FileStatus.of(layout.snapshots)?.kind == .directory {
            for name in try FileIO.listDirectory(layout.snapshots) {
                if let generation = ChrootLayout.generation(ofSnapshotNamed: name) {
                    highest = max(highest, generation)
                }
            }
        }
        guard highest < Generation.maximum else {
            return .failure(
                ServerStoreError(
                    "generation \(highest) is the last there can be (2^53): no newer one can be published to \(layout.host)"
                ))
        }
        return .success(highest + 1)
    }

    /// Whether the snapshot of a generation staged for a later ring is in the chroot and matches its staged
    /// manifest, hashed as the current one is (by the digest cache, or read whole with `--verify`), so that no ring
    /// is ever given a snapshot its hosts refuse. A damaged one is written again from the same tree when that gives
    /// the same bytes; when it does not, the staged generation is given up and a new one takes its place.
    private func stagedSnapshotIsIntact(
        _ staged: Manifest, tree: ResolvedTree, layout: ChrootLayout, verify: Bool, dryRun: Bool,
        result: inout PublishResult
    ) throws -> Bool {
        let path = layout.snapshot(staged.generation)
        // Anything but a regular file is no staged snapshot: a new generation takes its place.
        let status = (try? FileStatus.of(path)).flatMap { $0.kind == .regular ? $0 : nil }
        switch SnapshotCondition.of(path, status: status, signedBy: staged, verify: verify, digests: resolver.digests) {
        case .intact: return true
        case .missing: return false
        case .damaged:
            // A dry run keeps the staged generation: the publish it previews writes the snapshot again.
            return try repairSnapshot(of: staged, from: tree, layout: layout, staged: true, result: &result) || dryRun
        }
    }

    /// Puts `toplevel`'s closure into the server's one pool (compressed once, whoever else shares the paths), then
    /// links it into the host's cache: exactly its closure, the pool's inodes.
    func fillCache(of toplevel: String, layout: ChrootLayout) async throws(BinaryCache.Failure) {
        let pool = CachePool(chrootRoot: configuration.server.chrootRoot)
        try await pool.add(
            closureOf: toplevel, signingKeyFile: configuration.server.stateDirectory + "/" + SigningKeyFile.secretName)
        try pool.link(closureOf: toplevel, into: BinaryCache(directory: layout.cache))
    }

    /// Makes the served system's cache again when it lacks the toplevel's entry: written by a fleet before one
    /// file per store path (an unchanged host is not published again, so nothing else would), or removed by
    /// hand. Its manifest names the cache, so the host needs it; a failure is a warning, as the host's
    /// generation stands either way.
    ///
    /// - Returns: whether it made the cache again.
    func restoreCache(of toplevel: String, layout: ChrootLayout, result: inout PublishResult) async -> Bool {
        guard !BinaryCache(directory: layout.cache).hasEntry(of: toplevel) else { return false }
        do {
            try await fillCache(of: toplevel, layout: layout)
            result.warnings.append("made the cache of \(toplevel) again: \(layout.cache) lacked its entries")
            return true
        } catch {
            result.warnings.append(
                "the cache of \(toplevel), which the published manifest names, lacks its entries and cannot be made "
                    + "again: \(error); the host cannot fetch its system until it is (`fleet publish` after fixing that)"
            )
            return false
        }
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
                case .generated(let bytes, _):
                    try writer.addFile(entry.path, permissions: entry.permissions, bytes: bytes)
                }
            }
            try writer.finish()
            try FileIO.setMode(temporary, ChrootLayout.snapshotFileMode)
            FaultPoint.snapshotWritten.trigger(host: host.value)
            try FileIO.renameDurably(temporary, to: path)
        } catch {
            _ = try? FileIO.removeFile(temporary)
            throw error
        }
        FaultPoint.snapshotRenamed.trigger(host: host.value)
        guard let status = try FileStatus.of(path) else { throw FileSystemError("stat", path: path) }
        return (status.size, try SHA256Hasher.hex(ofFile: path))
    }

    /// Copies a file into the snapshot if it is still the version that was resolved and hashed: a file
    /// replaced (by a link, say) or written since then stops the publish instead of reaching a chroot.
    func addFile(
        _ entry: ResolvedTree.Entry, from source: String, identity: FileIdentity, to writer: SnapshotWriter
    ) throws {
        let changed = FileSystemError(
            "read", path: source, errno: EAGAIN, detail: "changed after it was resolved; publish again")
        let (descriptor, status) = try FileIO.openRegularNoFollow(source)
        try FileIO.closeAfter(descriptor) { descriptor in
            guard status.identity == identity else { throw changed }
            try writer.addFile(entry.path, permissions: entry.permissions, contentsOf: descriptor, sourcePath: source)
            guard try FileStatus.of(descriptor: descriptor, path: source).identity == identity else { throw changed }
        }
    }

    /// Removes superseded snapshots past their grace period and, when that (or this publish) may have left
    /// cache links that no served generation needs, those too (the pool's copies go after the publish).
    func collect(
        _ layout: ChrootLayout, current: UInt64, now: Date, published: Bool, rollout: RolloutContext? = nil,
        warnings: inout [String]
    ) throws {
        let removed = try SnapshotCollector.collect(
            layout, currentGeneration: current, graceSeconds: configuration.server.snapshotGraceSeconds,
            now: Int64(now.timeIntervalSince1970), keeping: try rollout?.keeping(layout.host.value) ?? [])
        let snapshotsRemoved = removed.contains { $0.hasPrefix(layout.snapshots + "/") }
        guard published || snapshotsRemoved else { return }
        if let unreadable = try CacheCollector.collect(layout, store: store, references: entryReferences)?.unreadable {
            warnings.append(unreadable)
        }
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
