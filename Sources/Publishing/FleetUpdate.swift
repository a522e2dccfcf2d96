import BuildGate
import FleetFiles
public import FleetProtocol
public import Foundation
public import Inventory
public import ServerStore

/// `fleet update`: moves the hosts' flake inputs to their newest revisions, builds every host whose inputs
/// moved, and publishes only what built, all or nothing (``UpdateOptions/Policy/all``) or host by host
/// (``UpdateOptions/Policy/perHost``).
///
/// The inputs are updated in a scratch clone of the repository's HEAD under `<state_dir>/updates/`, so the
/// sysadmin's working tree is never left half-updated: it is only written at the end, with the lock files of
/// the hosts that are published (and committed with `--commit`). Then those hosts are published from the
/// repository by the ordinary ``Publisher``, exactly as `fleet publish` would publish them, so whatever shapes a
/// publish (the build gate, caches, rings) shapes an update too.
///
/// A host's lock in the repository is therefore always the one it was last published with: a host that did not
/// build keeps its old lock, and the next update tries the newest inputs for it again, publishing it once
/// upstream is fixed.
///
/// The repository must be a git repository without uncommitted changes (they would be published without being
/// built, or committed around); the caller holds the publish lock.
public struct FleetUpdate {
    let configuration: FleetConfiguration
    let signingKey: SigningKey
    let store: StateStore
    public let options: UpdateOptions
    let builder: SystemBuilder
    let updater = FlakeInputUpdater()

    public init(
        configuration: FleetConfiguration, signingKey: SigningKey, store: StateStore, options: UpdateOptions
    ) throws(UpdateError) {
        for name in options.inputs where !FlakeLock.isValidInputName(name) {
            throw UpdateError("--input \(String(reflecting: name)) is not an input name: \(FlakeLock.inputNameRule)")
        }
        self.configuration = configuration
        self.signingKey = signingKey
        self.store = store
        self.options = options
        builder = SystemBuilder(stateDirectory: configuration.server.stateDirectory)
    }

    /// Where scratch copies are made: `<state_dir>/updates/`.
    public var scratchDirectory: String { configuration.server.stateDirectory + "/updates" }

    /// Updates, builds and publishes `hosts` (from the repository's fleet.toml). `progress` is told each step.
    /// Hosts that fail are results; errors thrown stop the update before it changed anything, or are the
    /// publish's own.
    public func run(
        _ hosts: [HostConfiguration], now: Date = WallClock.system.now(), progress: (String) -> Void = { _ in }
    ) async throws -> UpdateRun {
        var run = try await perform(hosts, now: now, progress: progress)
        // Every host's generation after the update: the one published now, or the one it keeps.
        for (index, host) in hosts.enumerated() where run.hosts[index].generation == nil {
            let layout = ChrootLayout(root: configuration.server.chrootRoot, host: host.name)
            run.hosts[index].generation = HostPlan.currentManifest(layout).manifest?.generation
        }
        return run
    }

    func perform(_ hosts: [HostConfiguration], now: Date, progress: (String) -> Void) async throws -> UpdateRun {
        let repository = try await UpdateRepository.open(configuration.repository)
        try await repository.requireUnchanged()
        try FileIO.createDirectories(scratchDirectory, mode: 0o700)
        // A scratch copy left by an update that was killed (the publish lock says none runs now).
        for name in try FileIO.listDirectory(scratchDirectory) where name.hasPrefix("scratch-") {
            try? FileIO.removeTree(scratchDirectory + "/" + name)
        }
        let scratchRoot = scratchDirectory + "/scratch-" + UTCTime.compact(now)
        defer { try? FileIO.removeTree(scratchRoot) }
        progress("copying \(repository.base.prefix(12)) into \(scratchRoot)")
        let scratch = try await repository.makeScratch(at: scratchRoot)

        var entries = hosts.map { HostUpdate(host: $0.name.value, status: .skipped) }
        let planned = try plan(hosts, in: scratch, entries: &entries)
        var newLocks: [Int: [UInt8]] = [:]
        for (index, plan) in planned.sorted(by: { $0.key < $1.key }) {
            progress(
                "updating \(plan.inputs.isEmpty ? "the inputs" : plan.inputs.joined(separator: ", ")) of \(hosts[index].name)"
            )
            if let lock = await updateLock(plan, of: hosts[index], in: scratch, entry: &entries[index]) {
                newLocks[index] = lock
            }
        }
        try await build(newLocks.keys.sorted(), of: hosts, in: scratch, entries: &entries, progress: progress)

        let built = newLocks.keys.sorted().filter { entries[$0].status == .held }
        let failed = entries.filter { $0.status == .failed }.map(\.host)
        var run = UpdateRun(
            outcome: .current, policy: options.policy, baseCommit: repository.base, commit: nil, hosts: entries,
            publish: nil, warnings: [])
        if built.isEmpty && failed.isEmpty { return run }
        let publishable = options.policy == .all && !failed.isEmpty ? [] : built
        for index in built where !publishable.contains(index) {
            entries[index].reason =
                "built, but not published: \(failed.joined(separator: ", ")) did not, and --policy all publishes "
                + "all or nothing"
        }
        if options.dryRun {
            for index in publishable { entries[index].reason = "built; an update would publish it" }
            run.hosts = entries
            run.outcome = failed.isEmpty ? .wouldPublish : .wouldFail
            return run
        }
        if publishable.isEmpty {
            run.hosts = entries
            run.outcome = .failed
            try recordEvents(run)
            return run
        }

        // Only now is the repository written: the published hosts' locks, committed with `--commit`.
        try await repository.requireUnchanged()
        var files: [String] = []
        for index in publishable {
            let relative = "hosts/\(hosts[index].name)/flake.lock"
            try writeIntoRepository(newLocks[index] ?? [], relative: relative)
            files.append(relative)
        }
        if options.commit {
            progress("committing \(files.joined(separator: ", "))")
            run.commit = try await repository.commit(files, message: commitMessage(publishable.map { entries[$0] }))
        }
        progress("publishing \(publishable.map { hosts[$0].name.value }.joined(separator: ", "))")
        let path = configuration.repository
        let publisher = try Publisher(
            configuration: configuration, signingKey: signingKey, store: store,
            sourceCommit: { await Publisher.sourceCommit(repository: path) })
        let published = try await publisher.publish(publishable.map { hosts[$0] }, now: now)
        for result in published.results {
            guard let index = entries.firstIndex(where: { $0.host == result.host.value }) else { continue }
            entries[index].generation = result.generation
            switch result.status {
            case .published, .unchanged:
                entries[index].status = .published
                entries[index].reason = nil
            case .staged:
                // With rings the update is a publish like any other: it reaches the host when its ring does.
                entries[index].status = .published
                entries[index].reason = "staged: the host gets it when its rollout ring does (`fleet rollout status`)"
            case .refused, .buildFailed, .stillFailing, .wouldPublish, .wouldBuild, .wouldFail:
                entries[index].status = .failed
                entries[index].reason =
                    "its lock is written, but the publish said \(result.status.rawValue): "
                    + (result.reason ?? "no reason given")
            }
        }
        run.hosts = entries
        run.publish = published
        run.warnings = published.warnings
        run.outcome = run.failures.isEmpty ? .published : .partial
        try recordEvents(run)
        return run
    }

    /// What to update in one host: its lock before, and the inputs named for it (none: all).
    struct LockPlan {
        let directory: String
        let lock: FlakeLock
        let bytes: [UInt8]
        let inputs: [String]
    }

    /// Finds each host's flake and lock in the scratch copy, and the inputs to update in it; refuses an
    /// `--input` that no selected host has.
    func plan(_ hosts: [HostConfiguration], in scratch: String, entries: inout [HostUpdate]) throws(UpdateError)
        -> [Int: LockPlan]
    {
        var plans: [Int: LockPlan] = [:]
        for (index, host) in hosts.enumerated() {
            let relative = "hosts/\(host.name)"
            let directory = scratch + "/" + relative
            func isRegular(_ name: String) -> Bool { (try? FileStatus.of(directory + "/" + name))??.kind == .regular }
            guard isRegular("flake.nix"), isRegular("flake.lock") else {
                entries[index].reason = "\(relative) has no flake.nix with a flake.lock of its own: nothing to update"
                continue
            }
            let bytes: [UInt8]
            let lock: FlakeLock
            do {
                bytes = try FileIO.readNoFollow(directory + "/flake.lock", limit: FlakeLock.sizeLimit)
                lock = try FlakeLock.parse(bytes).get()
            } catch {
                entries[index].status = .failed
                entries[index].reason = "\(relative)/flake.lock: \(error); fix it (e.g. `nix flake lock`) and commit it"
                continue
            }
            let inputs = options.inputs.filter(lock.names.contains)
            if lock.inputs.isEmpty || (!options.inputs.isEmpty && inputs.isEmpty) {
                entries[index].reason =
                    "\(relative)/flake.lock has " + (lock.inputs.isEmpty ? "no inputs" : "none of the inputs named")
                continue
            }
            plans[index] = LockPlan(directory: directory, lock: lock, bytes: bytes, inputs: inputs)
        }
        let known = Set(plans.values.flatMap(\.lock.names))
        let unknown = options.inputs.filter { !known.contains($0) }
        if !unknown.isEmpty {
            throw UpdateError(
                "--input \(unknown.joined(separator: ", ")): not an input of the flake.lock of "
                    + (hosts.count == 1 ? "host \(hosts[0].name)" : "any of the hosts selected")
                    + " (their inputs: \(known.isEmpty ? "none" : known.sorted().joined(separator: ", "))); nothing was changed"
            )
        }
        return plans
    }

    /// Runs Nix on the host's flake in the scratch copy; the new lock's bytes when its inputs moved.
    func updateLock(_ plan: LockPlan, of host: HostConfiguration, in scratch: String, entry: inout HostUpdate) async
        -> [UInt8]?
    {
        if let problem = await updater.update(flake: plan.directory, inputs: plan.inputs) {
            entry.status = .failed
            entry.reason = "its inputs could not be updated: \(problem)"
            return nil
        }
        let after: [UInt8]
        let lock: FlakeLock
        do {
            after = try FileIO.readNoFollow(plan.directory + "/flake.lock", limit: FlakeLock.sizeLimit)
            lock = try FlakeLock.parse(after).get()
        } catch {
            entry.status = .failed
            entry.reason = "the lock Nix wrote cannot be read: \(error)"
            return nil
        }
        guard after != plan.bytes else {
            entry.status = .current
            entry.reason = nil
            return nil
        }
        entry.inputs = lock.inputs.compactMap { input in
            let before = plan.lock.revision(of: input.name) ?? "none"
            return before == input.revision ? nil : .init(name: input.name, from: before, to: input.revision)
        }
        return after
    }

    /// Builds the hosts whose inputs moved (`--jobs` at once) from the scratch copy; each becomes `held` (built,
    /// not yet published) or `failed`. A tree the build gate remembers as failed is not built again.
    func build(
        _ indices: [Int], of hosts: [HostConfiguration], in scratch: String, entries: inout [HostUpdate],
        progress: (String) -> Void
    ) async throws {
        guard !indices.isEmpty else { return }
        let resolver = try HostTreeResolver(repository: scratch)
        let remembered = try store.buildFailures()
        var work: [(Int, HostConfiguration, [SystemBuilder.SourceFile])] = []
        for index in indices {
            let host = hosts[index]
            let files: [SystemBuilder.SourceFile]
            do throws(ResolutionError) {
                files = try resolver.resolve(host).buildInputs
            } catch {
                entries[index].status = .failed
                entries[index].reason = error.problems.map(\.description).joined(separator: "; ")
                continue
            }
            if let failure = remembered[host.name.value], failure.treeDigest == SystemBuilder.treeDigest(files) {
                entries[index].status = .failed
                entries[index].remembered = true
                entries[index].log = failure.log
                entries[index].reason =
                    "did not build with these inputs at \(failure.failedAt), and nothing changed since: "
                    + "\(failure.reason ?? "unknown reason")"
                continue
            }
            work.append((index, host, files))
        }
        let builder = self.builder
        let jobs = max(1, options.jobs)
        try await withThrowingTaskGroup(of: (Int, BuildResult).self) { group in
            var next = 0
            func start() {
                let (index, host, files) = work[next]
                next += 1
                progress("building \(host.name) (nixosConfigurations.\(host.attribute))")
                group.addTask { (index, await builder.build(host, files: files)) }
            }
            while next < min(jobs, work.count) { start() }
            while let (index, build) = try await group.next() {
                if !options.dryRun { try store.record(build) }
                entries[index].log = build.log
                if build.succeeded, let toplevel = build.toplevel {
                    entries[index].status = .held
                    entries[index].toplevel = toplevel
                } else {
                    entries[index].status = .failed
                    entries[index].reason = "did not build: \(build.reason ?? "unknown reason")"
                }
                progress("\(entries[index].host): \(entries[index].status == .held ? "built" : "did not build")")
                if next < work.count { start() }
            }
        }
    }

    /// Replaces a lock file of the repository by the updated one, atomically, keeping its owner and mode.
    func writeIntoRepository(_ bytes: [UInt8], relative: String) throws {
        let path = configuration.repository + "/" + relative
        guard let status = try FileStatus.of(path), status.kind == .regular else {
            throw UpdateError("\(path) is no longer a regular file; nothing more was written")
        }
        try FileIO.writeAtomically(bytes, to: path, mode: status.permissions, owner: status.owner, group: status.group)
    }

    /// The commit's message: the inputs' revisions, then each host's.
    func commitMessage(_ published: [HostUpdate]) -> String {
        var seen: Set<String> = []
        var summary: [String] = []
        for change in published.flatMap(\.inputs) where seen.insert("\(change.name) \(change.to)").inserted {
            summary.append(
                "\(change.name) \(FlakeLock.Input(name: change.name, revision: change.to).shortRevision)")
        }
        var lines = ["fleet update: " + (summary.isEmpty ? "flake.lock" : summary.joined(separator: ", ")), ""]
        for host in published {
            lines.append("\(host.host): \(host.inputSummary.isEmpty ? "lock rewritten" : host.inputSummary)")
        }
        lines.append("")
        lines.append("Built on the server before publishing (fleet update --policy \(options.policy.rawValue)).")
        return lines.joined(separator: "\n")
    }

    /// Records `update-published` and `update-failed` in state.db's events (the hooks are told later, by
    /// ``UpdateAnnouncer``, from the same run). A failure only the build gate's memory repeats is not recorded
    /// again.
    func recordEvents(_ run: UpdateRun) throws {
        if let detail = UpdateAnnouncer.publishedDetail(run) {
            try store.recordEvent(host: nil, kind: .updatePublished, detail: detail)
        }
        if let detail = UpdateAnnouncer.failedDetail(run) {
            try store.recordEvent(host: nil, kind: .updateFailed, detail: detail)
        }
    }
}
