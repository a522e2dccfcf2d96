import ArchiveKit
import CommandRunner
import FleetFiles
public import FleetProtocol
import Foundation
import NixKit
import SFTPTransport

/// What a run did, for the command line to print and turn into an exit status.
public struct RunResult: Sendable, Equatable {
    public var outcome: RunOutcome
    /// One line saying why, for the user and the report.
    public var reason: String
    /// The published generation the run was about, when it read a manifest.
    public var generation: UInt64?
}

extension RunResult {
    /// A run stopped by this machine itself: says so, and that nothing was applied and the next run tries again.
    static func localFailure(_ what: String, generation: UInt64? = nil) -> RunResult {
        RunResult(
            outcome: .localFailure,
            reason: "\(what) — a problem on this host (free some space, or make the state directory writable); "
                + "nothing was applied, and the next run tries again",
            generation: generation)
    }

    /// Whether a failed system call says this machine is out of a resource or cannot write where it must, rather
    /// than that what it was given is bad.
    static func isLocalFailure(errno number: Int32) -> Bool {
        [ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EIO, ENOMEM, EMFILE, ENFILE, EFBIG].contains(number)
    }
}

/// Either a run goes on with a value, or it is done with a result (already reported where it should be).
enum Step<Value> {
    case next(Value)
    case done(RunResult)
}

/// One `fleet-client run`: poll the host's chroot, verify, and when something new is published, download,
/// build, activate and report. Serialized by `<state_dir>/lock`.
///
/// Nothing is applied unless the manifest verifies (signature, host, no downgrade, no replay) and the snapshot
/// matches its size and hash and extracts safely. A failed build or activation leaves the previous system and
/// profile generation current, and the failed generation is not tried again until a newer one is published.
public struct ClientRun: Sendable {
    public let configuration: ClientConfiguration
    public let log: RunLog

    /// Snapshots larger than this are refused before downloading.
    static let extractionLimits = ExtractionLimits(maxBytes: 8 << 30, maxEntries: 500_000, maxFileBytes: 2 << 30)

    public init(configuration: ClientConfiguration, log: RunLog) {
        self.configuration = configuration
        self.log = log
    }

    var stateDirectory: String { configuration.stateDirectory }

    public func run() async throws(ClientError) -> RunResult {
        let lockPath = stateDirectory + "/lock"
        let lock: FileLock?
        do {
            try prepareStateDirectory()
            lock = try FileLock.acquire(lockPath, wait: false)
        } catch {
            let result = RunResult.localFailure("cannot prepare the state directory \(stateDirectory): \(error)")
            log.phase("\(result.outcome.rawValue): \(result.reason)")
            return result
        }
        guard let lock else {
            let reason = "another fleet-client run holds \(lockPath); this one stops (the running one will finish)"
            log.phase(reason)
            return RunResult(outcome: .locked, reason: reason)
        }
        defer { withExtendedLifetime(lock) {} }
        ClientState.removeLeftovers(stateDirectory: stateDirectory)

        let loaded = try ClientState.load(stateDirectory: stateDirectory)
        var attempt = Attempt(startedAt: Date(), state: loaded)
        let result: RunResult
        if let pending = try PendingActivation.load(stateDirectory: stateDirectory) {
            result = await resume(pending, &attempt)
        } else {
            result = await poll(&attempt)
        }
        attempt.state.lastResult = result.outcome
        attempt.state.lastReason = result.reason
        attempt.state.lastRunAt = UTCTime.iso(Date())
        attempt.state.rebootNeeded = rebootReason()
        do {
            try attempt.state.save(stateDirectory: stateDirectory, replacing: loaded)
        } catch {
            // What the run did stands (and was reported); that it cannot be remembered here needs a look.
            log.phase("\(result.outcome.rawValue): \(result.reason)")
            let failure = RunResult.localFailure("\(error)", generation: result.generation)
            log.phase("\(failure.outcome.rawValue): \(failure.reason)")
            return failure
        }
        log.phase("\(result.outcome.rawValue): \(result.reason)")
        await rebootIfDue(&attempt.state)
        return result
    }

    /// Why this machine needs a reboot to run its profile's system, if it does.
    func rebootReason() -> String? {
        let target = try? NixSystem(profile: configuration.profile, log: log).currentGeneration()?.system
        return RebootCheck(reboot: configuration.reboot).reason(target: target ?? nil)
    }

    /// Reboots with the configured command when a reboot is needed, the policy's window is open, and the
    /// client has not already rebooted for this system. Runs last: the report is uploaded and the state saved.
    private func rebootIfDue(_ state: inout ClientState) async {
        guard let reason = state.rebootNeeded else { return }
        let check = RebootCheck(reboot: configuration.reboot)
        guard check.allowsReboot(at: Date()) else {
            if configuration.reboot.policy == .window, let window = configuration.reboot.window {
                log.phase("a reboot is needed (\(reason)); waiting for the reboot window \(window)")
            } else {
                log.phase("a reboot is needed (\(reason)); the reboot policy is never, so it is left to you")
            }
            return
        }
        let target = (try? NixSystem(profile: configuration.profile, log: log).currentGeneration()?.system) ?? nil
        guard let target, state.rebootRequestedFor != target else {
            log.phase(
                "a reboot is needed (\(reason)), but the client already rebooted for \(target ?? "this system"); not again"
            )
            return
        }
        state.rebootRequestedFor = target
        do { try state.save(stateDirectory: stateDirectory) } catch { log.phase("\(error)") }
        let command = configuration.reboot.command
        log.phase(
            "rebooting inside the window \(configuration.reboot.window?.description ?? ""): \(reason); running \(command.joined(separator: " "))"
        )
        do {
            let output = try await Command.run(command[0], Array(command.dropFirst()), timeout: .seconds(120))
            if !output.succeeded {
                log.phase(
                    "the reboot command exited with status \(output.exitCode): \(output.standardError.trimmingWhitespace())"
                )
            }
        } catch {
            log.phase("the reboot command could not run: \(error)")
        }
    }

    /// The mutable record of one run: state as it evolves and what goes into the report.
    struct Attempt {
        let startedAt: Date
        var state: ClientState
        var report: RunReport?
    }

    /// The server as client.toml describes it.
    var endpoint: SSHEndpoint {
        SSHEndpoint(
            host: configuration.server.address, port: configuration.server.port, user: configuration.server.user,
            identityFile: configuration.identityFile, pinnedHostKey: configuration.server.hostKey.description,
            connectTimeout: .seconds(configuration.server.connectTimeoutSeconds),
            ioTimeout: .seconds(configuration.server.ioTimeoutSeconds))
    }

    /// Connects and authenticates; a failure is the run's result: refused (host key, authentication),
    /// unreachable (network), or failed (a local configuration problem).
    func connect(openingSFTP: Bool = true) async -> Step<SFTPConnection> {
        let endpoint = self.endpoint
        log.phase("connecting to \(endpoint.user)@\(endpoint.server)")
        do {
            return .next(try await SFTPConnection.connect(to: endpoint, openingSFTP: openingSFTP))
        } catch {
            switch error.code {
            case .hostKeyMismatch, .authenticationRefused:
                return .done(RunResult(outcome: .refused, reason: error.description))
            case .invalidConfiguration:
                return .done(
                    RunResult(
                        outcome: .failed,
                        reason: "\(error.description) (check \(configuration.identityFile) and [server] host_key)"))
            default:
                return .done(
                    RunResult(
                        outcome: .unreachable,
                        reason: "\(error.description) Nothing was changed; the next run tries again."))
            }
        }
    }

    private func poll(_ attempt: inout Attempt) async -> RunResult {
        let connection: SFTPConnection
        switch await connect() {
        case .next(let connected): connection = connected
        case .done(let result): return result
        }
        let fetched = await pollConnected(connection, endpoint: endpoint, &attempt)
        await connection.close()
        switch fetched {
        case .done(let result):
            return result
        case .next(let (manifest, generationDirectory)):
            let result = await apply(manifest, tree: generationDirectory, attempt: &attempt)
            await reportOverNewConnection(result, &attempt, endpoint: endpoint)
            return result
        }
    }

    /// The part of a run that needs the poll's connection: outbox, manifest, heartbeat or snapshot.
    ///
    /// - Returns: the verified manifest and its extracted generation directory when there is something to
    ///   apply; otherwise the run's result (already reported).
    private func pollConnected(_ connection: SFTPConnection, endpoint: SSHEndpoint, _ attempt: inout Attempt) async
        -> Step<(Manifest, String)>
    {
        attempt.state.lastContactAt = UTCTime.iso(Date())
        let outbox = ReportOutbox(stateDirectory: stateDirectory, log: log)
        if !outbox.waiting().isEmpty {
            do {
                let count = try await outbox.flush(over: connection)
                log.phase("uploaded \(count) report file(s) kept from earlier runs")
            } catch {
                log.phase("could not upload earlier reports yet: \(error)")
            }
        }

        // Read and verify the manifest.
        let manifest: Manifest
        switch await fetchManifest(over: connection, state: attempt.state) {
        case .next(let verified): manifest = verified
        case .done(let refusal):
            if refusal.outcome != .unchanged { await report(refusal, &attempt, over: connection) }
            await heartbeat(&attempt, over: connection, result: refusal)
            return .done(refusal)
        }
        attempt.state.lastSeen = ManifestPolicy.Seen(manifest)

        if let applied = attempt.state.applied, applied.generation == manifest.generation,
            applied.contentDigest == manifest.contentDigest
        {
            let result = RunResult(
                outcome: .unchanged, reason: "generation \(manifest.generation) is applied and current",
                generation: manifest.generation)
            await heartbeat(&attempt, over: connection, result: result)
            return .done(result)
        }
        if let failed = attempt.state.failed, failed.generation == manifest.generation,
            failed.contentDigest == manifest.contentDigest
        {
            let what = failed.state == .rolledBack ? "was rolled back" : "failed"
            let result = RunResult(
                outcome: .unchanged,
                reason: "generation \(manifest.generation) \(what) at \(failed.at) (\(failed.reason)); it is not "
                    + "tried again until a newer one is published",
                generation: manifest.generation)
            await heartbeat(&attempt, over: connection, result: result)
            return .done(result)
        }

        // Something new: fetch it while connected; the build runs after the connection is closed.
        var report = RunReport(
            host: configuration.host.value, state: .failed, startedAt: UTCTime.iso(attempt.startedAt),
            finishedAt: "")
        report.generation = manifest.generation
        report.previousGeneration = attempt.state.applied?.generation
        report.sourceCommit = manifest.sourceCommit
        let target = "\(stateDirectory)/generations/\(manifest.generation)"
        switch await fetchSnapshot(manifest, over: connection, into: .generation(target), report: &report) {
        case .next(let directory):
            attempt.report = report
            if let toplevel = manifest.toplevel, manifest.hasCache {
                let mirror = CacheMirror(localDirectory: stateDirectory + "/cache", log: log)
                do {
                    _ = try await mirror.mirror(closureOf: toplevel, over: connection)
                } catch {
                    // Not recorded as a failed generation: the next run tries again.
                    let result = RunResult(
                        outcome: .failed, reason: "generation \(manifest.generation): \(error)",
                        generation: manifest.generation)
                    await self.report(result, &attempt, over: connection)
                    return .done(result)
                }
            }
            return .next((manifest, directory))
        case .done(let refusal):
            attempt.report = report
            await self.report(refusal, &attempt, over: connection)
            return .done(refusal)
        }
    }

    // MARK: - Steps

    /// Reads `/manifest` and checks it; a failure is the run's result (refused, or unchanged when nothing
    /// was published yet).
    func fetchManifest(over connection: SFTPConnection, state: ClientState) async -> Step<Manifest> {
        log.phase("reading the manifest")
        let bytes: [UInt8]
        do {
            bytes = try await connection.readFile(ChrootPaths.manifest, limit: Manifest.sizeLimit)
        } catch {
            if error.code == .noSuchFile {
                return .done(
                    RunResult(
                        outcome: .unchanged,
                        reason: "nothing is published for \(configuration.host) yet (no manifest on the server)"))
            }
            if error.code == .limitExceeded {
                return .done(
                    RunResult(
                        outcome: .refused, reason: "the manifest is larger than \(Manifest.sizeLimit) bytes: \(error)"))
            }
            return .done(RunResult(outcome: .unreachable, reason: error.description))
        }
        let manifest: Manifest
        do {
            manifest = try Manifest.verify(bytes, with: configuration.fleetPublicKey)
        } catch {
            return .done(
                RunResult(outcome: .refused, reason: "the manifest does not verify: \(error); nothing was applied"))
        }
        let refuse = { (reason: String) in
            Step<Manifest>.done(
                RunResult(outcome: .refused, reason: reason + "; nothing was applied", generation: manifest.generation))
        }
        if let reason = ManifestPolicy.refusal(of: manifest, for: configuration.host, lastSeen: state.lastSeen) {
            return refuse(reason)
        }
        log.phase(
            "generation \(manifest.generation) is published (commit \(manifest.sourceCommit), at \(manifest.publishedAt))"
        )
        return .next(manifest)
    }

    /// Where an extracted snapshot goes.
    enum SnapshotPlacement {
        /// `generations/<gen>` of the state directory, replaced when an interrupted run left one there; the
        /// download and the extraction in progress sit beside it.
        case generation(String)
        /// A directory this process has just created (`check --download`): the snapshot's top entries are
        /// moved into it, and the download and extraction in progress are inside it, so nothing outside it is
        /// touched and nothing in it is replaced.
        case createdDirectory(String)

        var target: String {
            switch self {
            case .generation(let path), .createdDirectory(let path): path
            }
        }

        /// Where the download and the extraction in progress go.
        var scratch: String {
            switch self {
            case .generation(let path): FileIO.split(path).directory
            case .createdDirectory(let path): path
            }
        }
    }

    /// Downloads the snapshot, checks its size and hash, and extracts it safely into `generations/<gen>` (or
    /// a directory `check` created).
    func fetchSnapshot(
        _ manifest: Manifest, over connection: SFTPConnection, into placement: SnapshotPlacement,
        report: inout RunReport
    ) async -> Step<String> {
        let generation = manifest.generation
        let refuse = { (reason: String) in
            Step<String>.done(
                RunResult(outcome: .refused, reason: reason + "; nothing was applied", generation: generation))
        }
        let started = Date()
        let target = placement.target
        let parent = placement.scratch
        let download = "\(parent)/.download-\(generation).tar.zst"
        unlink(download)
        let size = manifest.snapshot.size
        log.phase("downloading \(manifest.snapshot.path) (\(size) bytes)")
        let log = self.log
        do {
            try await connection.download(
                manifest.snapshot.path, to: download, expectedSize: size, limit: ManifestPolicy.snapshotLimit,
                progress: { received in
                    log.progress("downloading: \(size > 0 ? received * 100 / size : 100)% of \(size) bytes")
                })
        } catch {
            unlink(download)
            switch error.code {
            case .limitExceeded:
                return refuse("the snapshot on the server does not match the manifest: \(error)")
            case .noSuchFile, .permissionDenied:
                return .done(
                    RunResult(
                        outcome: .failed, reason: "the manifest names a snapshot the server does not serve: \(error)",
                        generation: generation))
            case .localIO:
                return .done(.localFailure("the snapshot cannot be stored here: \(error)", generation: generation))
            default:
                return .done(
                    RunResult(outcome: .unreachable, reason: "the download broke off: \(error)", generation: generation)
                )
            }
        }
        defer { unlink(download) }
        let digest: String
        do {
            digest = try Self.sha256(ofFile: download)
        } catch {
            return .done(.localFailure("cannot read the downloaded snapshot: \(error)", generation: generation))
        }
        guard digest == manifest.snapshot.sha256 else {
            return refuse(
                "the snapshot's sha256 is \(digest), but the signed manifest says \(manifest.snapshot.sha256)")
        }
        report.durations.download = Date().timeIntervalSince(started)

        let incoming = "\(parent)/.incoming-\(generation)"
        do {
            try FileIO.removeTree(incoming)
            let summary = try SafeExtractor().extract(
                archivePath: download, into: incoming, limits: Self.extractionLimits,
                // Not made durable: after a crash the generation is not recorded as applied, so the next run
                // removes and extracts it again; once applied, what counts is in the Nix store.
                durable: false)
            let top = try FileIO.listDirectory(incoming)
            guard top.contains("tree"), Set(top).isSubset(of: ["tree", "secrets"]) else {
                try? FileIO.removeTree(incoming)
                return refuse(
                    "the snapshot holds \(top.sorted().map(quoted).joined(separator: ", ")) at its top, not tree/ (and secrets/)"
                )
            }
            switch placement {
            case .generation:
                try FileIO.removeTree(target)
                guard rename(incoming, target) == 0 else {
                    throw FileSystemError("rename", path: "\(incoming) -> \(target)")
                }
            case .createdDirectory:
                for name in top where rename("\(incoming)/\(name)", "\(target)/\(name)") != 0 {
                    throw FileSystemError("rename", path: "\(incoming)/\(name) -> \(target)/\(name)")
                }
                guard rmdir(incoming) == 0 else { throw FileSystemError("rmdir", path: incoming) }
            }
            log.phase("extracted \(summary.files) files (\(summary.bytes) bytes) into \(target)")
        } catch let error as ArchiveError {
            try? FileIO.removeTree(incoming)
            if error.code == .system, let number = error.systemError, RunResult.isLocalFailure(errno: number) {
                return .done(.localFailure("cannot extract the snapshot: \(error)", generation: generation))
            }
            return refuse("the snapshot was refused while extracting: \(error)")
        } catch {
            try? FileIO.removeTree(incoming)
            return .done(.localFailure("cannot extract the snapshot: \(error)", generation: generation))
        }
        return .next(target)
    }

    /// Installs secrets, builds, sets the profile and activates; on failure puts the profile and secrets back.
    ///
    /// `boot` only stages the generation for the next boot, so there is nothing to confirm. `switch` and `test`
    /// activate it live (`switch` with `test` first, so a hang or power loss inside the window boots the old
    /// system), then must confirm it (``Confirmation``) or roll it back.
    private func apply(_ manifest: Manifest, tree generationDirectory: String, attempt: inout Attempt) async
        -> RunResult
    {
        let generation = manifest.generation
        let operation = (configuration.operation ?? manifest.operation).rawValue
        attempt.report?.operation = operation
        let secrets = SecretStore(stateDirectory: stateDirectory)
        let system = NixSystem(profile: configuration.profile, log: log)
        let built: String
        let previous: NixSystem.Generation?
        // Nil for `test`, which like `nixos-rebuild test` leaves the profile (and so the boot default) alone.
        let made: NixSystem.Generation?
        do throws(NixSystem.Failure) {
            do {
                try secrets.take(from: generationDirectory, generation: generation)
            } catch {
                throw NixSystem.Failure(
                    step: "secrets", reason: error.description, exitCode: nil, systemError: error.systemError)
            }
            let buildStarted = Date()
            defer { attempt.report?.durations.build = Date().timeIntervalSince(buildStarted) }
            do throws(NixSystem.Failure) {
                if let toplevel = manifest.toplevel, manifest.hasCache {
                    log.phase(
                        "substituting \(toplevel) from the fleet's binary cache (built on the server; nothing is evaluated here)"
                    )
                    try await system.realise(
                        toplevel, cache: stateDirectory + "/cache", trustedKey: configuration.fleetPublicKey.nixFormat,
                        gcRoot: stateDirectory + "/build-result")
                    built = toplevel
                } else {
                    log.phase("building nixosConfigurations.\(manifest.attribute) from \(generationDirectory)/tree")
                    built = try await system.build(
                        tree: generationDirectory + "/tree", attribute: manifest.attribute,
                        gcRoot: stateDirectory + "/build-result")
                    if let expected = manifest.toplevel, expected != built {
                        log.phase(
                            "note: this build gave \(built), the server's gave \(expected) (an impure or host-dependent build)"
                        )
                    }
                }
                attempt.report?.exitCodes.build = 0
            } catch {
                attempt.report?.exitCodes.build = error.exitCode
                throw error
            }
            attempt.report?.targetSystem = built
            log.phase("built \(built)")
            previous = try system.currentGeneration()
            made = operation == Operation.test.rawValue ? nil : try await system.setProfile(to: built)
            attempt.report?.profileGeneration = made?.number
        } catch {
            return failed(manifest, error, &attempt)
        }

        let pending = PendingActivation(
            generation: generation, contentDigest: manifest.contentDigest, sourceCommit: manifest.sourceCommit,
            operation: operation, system: built, madeProfileGeneration: made?.number,
            previousProfileGeneration: made == nil ? nil : previous?.number,
            // What a rollback activates again: for `test`, what ran before (the last system applied, which a
            // `test` left out of the profile), else the profile's previous generation.
            previousSystem: made == nil ? attempt.state.applied?.system ?? previous?.system : previous?.system,
            previousGeneration: attempt.state.applied?.generation,
            deadline: Date().timeIntervalSince1970 + Double(configuration.rollback.confirmTimeoutSeconds),
            snapshotSHA256: manifest.snapshot.sha256,
            startedAt: UTCTime.iso(Date()), pid: getpid())
        let live = operation != Operation.boot.rawValue
        let activationStarted = Date()
        do throws(NixSystem.Failure) {
            do {
                try secrets.activate(generation: generation)
                if live { try pending.save(stateDirectory: stateDirectory) }
            } catch {
                throw NixSystem.Failure(
                    step: "activation", reason: error.description, exitCode: nil, systemError: error.systemError)
            }
            let first = live ? Operation.test.rawValue : operation
            log.phase(
                made.map {
                    "profile \(configuration.profile) is at generation \($0.number); running switch-to-configuration \(first)"
                }
                    ?? "operation test: the profile \(configuration.profile) and the boot default stay as they are; running switch-to-configuration test"
            )
            try await system.activate(built, operation: first)
            attempt.report?.exitCodes.activation = 0
        } catch {
            attempt.report?.exitCodes.activation = error.exitCode
            attempt.report?.durations.activation = Date().timeIntervalSince(activationStarted)
            await undo(pending, secrets: secrets, system: system)
            return failed(manifest, error, &attempt)
        }
        attempt.report?.durations.activation = Date().timeIntervalSince(activationStarted)
        guard live else {
            return appliedResult(pending, &attempt)
        }
        return await confirmOrRollBack(pending, &attempt)
    }

    /// Finishes an activation that a killed run left waiting for confirmation: confirms it or rolls it back.
    ///
    /// When the machine is running another system than the pending one (it rebooted inside the window, and
    /// booted the old default), the pending generation is rolled back without asking the server.
    private func resume(_ pending: PendingActivation, _ attempt: inout Attempt) async -> RunResult {
        log.phase(
            "resuming generation \(pending.generation) from the activation journal (run \(pending.pid) stopped inside its confirmation window)"
        )
        var report = RunReport(
            host: configuration.host.value, state: .failed, startedAt: UTCTime.iso(attempt.startedAt), finishedAt: "")
        report.generation = pending.generation
        report.previousGeneration = pending.previousGeneration
        report.sourceCommit = pending.sourceCommit
        report.operation = pending.operation
        report.targetSystem = pending.system
        report.profileGeneration = pending.madeProfileGeneration
        attempt.report = report
        // The interrupted run verified this generation's manifest but was killed before it could record so:
        // record it now, so that `fleet-client status` does not show an older generation as seen than applied.
        if let sha256 = pending.snapshotSHA256, pending.generation > attempt.state.lastSeen?.generation ?? 0 {
            attempt.state.lastSeen = ClientState.Seen(
                generation: pending.generation, contentDigest: pending.contentDigest, snapshotSHA256: sha256)
        }
        let result: RunResult
        if let running = try? FileIO.readLink(configuration.reboot.currentSystem), running != pending.system {
            let reason =
                "the machine runs \(running), not the pending \(pending.system) (it rebooted inside the window)"
            log.phase("rolling back generation \(pending.generation): \(reason)")
            await undo(
                pending, secrets: SecretStore(stateDirectory: stateDirectory),
                system: NixSystem(profile: configuration.profile, log: log))
            attempt.state.failed = ClientState.Failed(
                generation: pending.generation, contentDigest: pending.contentDigest, state: .rolledBack,
                reason: reason,
                at: UTCTime.iso(Date()))
            result = RunResult(
                outcome: .rolledBack, reason: "generation \(pending.generation) was rolled back: \(reason)",
                generation: pending.generation)
        } else {
            // A fresh window, never the remainder of the old one: the old one may be over (the run was killed
            // long ago), and its remainder would give the server and the health checks no time at all.
            var resumed = pending
            let window = configuration.rollback.confirmTimeoutSeconds
            resumed.deadline = Date().timeIntervalSince1970 + Double(window)
            log.phase(
                "a fresh confirmation window of \(window) s (the interrupted run's ended at \(UTCTime.iso(Date(timeIntervalSince1970: pending.deadline))))"
            )
            do { try resumed.save(stateDirectory: stateDirectory) } catch { log.phase("\(error)") }
            result = await confirmOrRollBack(resumed, &attempt)
        }
        await reportOverNewConnection(result, &attempt, endpoint: endpoint)
        return result
    }

    /// The confirmation window of a live activation, then its end: made the boot default (`switch`) and
    /// recorded as applied, or rolled back.
    func confirmOrRollBack(_ pending: PendingActivation, _ attempt: inout Attempt) async -> RunResult {
        let deadline = Date(timeIntervalSince1970: pending.deadline)
        log.phase(
            "confirming generation \(pending.generation): a new SSH connection and \(configuration.healthChecks.count) health check(s), until \(UTCTime.iso(deadline))"
        )
        let confirmation = Confirmation(configuration: configuration, endpoint: endpoint, log: log)
        var failure = await confirmation.confirm(generation: pending.generation, deadline: deadline)
        let system = NixSystem(profile: configuration.profile, log: log)
        if failure == nil && pending.operation == Operation.switch.rawValue {
            do {
                log.phase("making generation \(pending.generation) the boot default: switch-to-configuration boot")
                try await system.activate(pending.system, operation: Operation.boot.rawValue)
            } catch {
                failure = "confirmed, but making it the boot default failed: \(error)"
            }
        }
        if let failure {
            log.phase("rolling back generation \(pending.generation): \(failure)")
            await undo(pending, secrets: SecretStore(stateDirectory: stateDirectory), system: system)
            let reason = "generation \(pending.generation) was rolled back: \(failure)"
            attempt.state.failed = ClientState.Failed(
                generation: pending.generation, contentDigest: pending.contentDigest, state: .rolledBack,
                reason: failure, at: UTCTime.iso(Date()))
            return RunResult(
                outcome: .rolledBack,
                reason: reason
                    + "; the previous system is back, and this generation is not tried again until a newer one is published",
                generation: pending.generation)
        }
        return appliedResult(pending, &attempt)
    }

    private func appliedResult(_ pending: PendingActivation, _ attempt: inout Attempt) -> RunResult {
        attempt.state.applied = ClientState.Applied(
            generation: pending.generation, contentDigest: pending.contentDigest, sourceCommit: pending.sourceCommit,
            system: pending.system, operation: pending.operation, at: UTCTime.iso(Date()))
        attempt.state.failed = nil
        PendingActivation.remove(stateDirectory: stateDirectory)
        pointCurrent(at: pending.generation)
        prune(keeping: pending.generation)
        return RunResult(
            outcome: .applied, reason: "generation \(pending.generation) applied (\(pending.operation))",
            generation: pending.generation)
    }

    /// A failed generation, not tried again until a newer one is published; unless this machine is what failed
    /// (a full or unwritable state directory while installing secrets or writing the journal), which is a local
    /// failure: the generation itself is fine, and the next run tries it again.
    private func failed(_ manifest: Manifest, _ failure: NixSystem.Failure, _ attempt: inout Attempt) -> RunResult {
        if let number = failure.systemError, RunResult.isLocalFailure(errno: number) {
            return .localFailure(
                "generation \(manifest.generation): \(failure.description)", generation: manifest.generation)
        }
        attempt.state.failed = ClientState.Failed(
            generation: manifest.generation, contentDigest: manifest.contentDigest, state: .failed,
            reason: failure.description, at: UTCTime.iso(Date()))
        return RunResult(
            outcome: .failed,
            reason:
                "generation \(manifest.generation): \(failure.description); the previous system stays, and this generation is not tried again until a newer one is published",
            generation: manifest.generation)
    }

    /// Puts the profile and secrets back as they were before the activation, re-activates the previous system
    /// (for `switch`, with `switch`, so the boot default is the previous system too; for `test`, with `test`,
    /// leaving the profile it never touched), and drops the journal.
    private func undo(_ pending: PendingActivation, secrets: SecretStore, system: NixSystem) async {
        if let madeNumber = pending.madeProfileGeneration {
            let previous = pending.previousProfileGeneration.flatMap { number in
                pending.previousSystem.map { NixSystem.Generation(number: number, system: $0) }
            }
            let made = NixSystem.Generation(number: madeNumber, system: pending.system)
            do {
                try await system.restoreProfile(to: previous, removing: made)
                log.phase(
                    previous.map { "profile set back to generation \($0.number)" }
                        ?? "profile removed again (there was none before)")
            } catch {
                log.phase("could not set the profile back: \(error)")
            }
        }
        secrets.restore(generation: pending.previousGeneration)
        if let previousSystem = pending.previousSystem {
            do {
                try await system.activate(previousSystem, operation: pending.operation)
                log.phase("re-activated the previous system \(previousSystem) (\(pending.operation))")
            } catch {
                log.phase("re-activating the previous system failed: \(error)")
            }
        }
        PendingActivation.remove(stateDirectory: stateDirectory)
    }

    // MARK: - Reporting

    /// Uploads the log and report of a run that did not reach a build, over the poll's connection.
    private func report(_ result: RunResult, _ attempt: inout Attempt, over connection: SFTPConnection) async {
        let files = reportFiles(result, &attempt)
        do {
            for file in files { try await ReportOutbox.upload(name: file.name, bytes: file.bytes, over: connection) }
            log.phase("report uploaded to logs/\(files[1].name)")
        } catch {
            keep(files, because: error)
        }
    }

    /// After a build, the poll's connection may be long gone: open a new one for the report.
    private func reportOverNewConnection(_ result: RunResult, _ attempt: inout Attempt, endpoint: SSHEndpoint) async {
        let files = reportFiles(result, &attempt)
        do {
            let connection = try await SFTPConnection.connect(to: endpoint)
            do {
                for file in files {
                    try await ReportOutbox.upload(name: file.name, bytes: file.bytes, over: connection)
                }
                await connection.close()
            } catch {
                await connection.close()
                throw error
            }
            log.phase("report uploaded to logs/\(files[1].name)")
        } catch {
            keep(files, because: error)
        }
    }

    private func keep(_ files: [(name: String, bytes: [UInt8])], because error: any Error) {
        log.phase("could not upload the report (\(error)); it is kept in \(stateDirectory)/outbox for the next run")
        do { try ReportOutbox(stateDirectory: stateDirectory, log: log).enqueue(files) } catch { log.phase("\(error)") }
    }

    /// The log and the report of this run, named by time and generation.
    private func reportFiles(_ result: RunResult, _ attempt: inout Attempt) -> [(name: String, bytes: [UInt8])] {
        let finished = Date()
        var report =
            attempt.report
            ?? RunReport(
                host: configuration.host.value, state: result.outcome, startedAt: UTCTime.iso(attempt.startedAt),
                finishedAt: "")
        report.state = result.outcome
        report.reason = result.reason
        report.generation = report.generation ?? result.generation
        report.finishedAt = UTCTime.iso(finished)
        report.durations.total = finished.timeIntervalSince(attempt.startedAt)
        report.currentSystem = try? FileIO.readLink(configuration.reboot.currentSystem)
        report.bootedSystem = try? FileIO.readLink(configuration.reboot.bootedSystem)
        if report.bootedSystem != nil {
            let reason = rebootReason()
            report.rebootNeeded = reason != nil
            report.rebootReason = reason
        }
        let stem = UploadName.stem(time: UTCTime.compact(finished), generation: result.generation)
        let logName = UploadName.logName(stem: stem)
        report.log = logName
        report.pollIntervalSeconds = configuration.pollIntervalSeconds
        attempt.report = report
        return [(logName, log.contents()), (UploadName.reportName(stem: stem), report.encoded())]
    }

    /// Replaces `logs/heartbeat.json`: the cheap sign of life of a poll with nothing to do.
    private func heartbeat(_ attempt: inout Attempt, over connection: SFTPConnection, result: RunResult) async {
        var beat = Heartbeat(
            host: configuration.host.value, at: UTCTime.iso(Date()),
            appliedGeneration: attempt.state.applied?.generation,
            seenGeneration: attempt.state.lastSeen?.generation, failedGeneration: attempt.state.failed?.generation,
            lastResult: result.outcome, reason: result.reason,
            rebootNeeded: (try? FileIO.readLink(configuration.reboot.bootedSystem)) == nil ? nil : rebootReason() != nil
        )
        beat.pollIntervalSeconds = configuration.pollIntervalSeconds
        do {
            try await ReportOutbox.upload(name: UploadName.heartbeatName, bytes: beat.encoded(), over: connection)
        } catch {
            log.phase("could not write the heartbeat: \(error)")
        }
    }

    // MARK: - Local files

    private func prepareStateDirectory() throws(ClientError) {
        do {
            try FileIO.createDirectories(stateDirectory, mode: 0o755)
            try FileIO.ensureDirectory(stateDirectory + "/generations", mode: 0o700)
        } catch {
            throw ClientError("cannot prepare the state directory \(stateDirectory): \(error)")
        }
    }

    /// `current -> generations/<gen>`, replaced atomically.
    private func pointCurrent(at generation: UInt64) {
        let link = stateDirectory + "/current"
        let temporary = FileIO.temporaryPath(for: link)
        unlink(temporary)
        if symlink("generations/\(generation)", temporary) != 0 || rename(temporary, link) != 0 {
            log.phase("could not point \(link) at generations/\(generation) (errno \(errno))")
        }
    }

    /// Removes extracted generations and secrets beyond the newest `keepGenerations` besides the current one.
    private func prune(keeping current: UInt64) {
        let generations = stateDirectory + "/generations"
        let numbers = ((try? FileIO.listDirectory(generations)) ?? []).compactMap(UInt64.init).sorted(by: >)
        let keep = Set([current] + numbers.filter { $0 != current }.prefix(configuration.keepGenerations))
        for number in numbers where !keep.contains(number) {
            try? FileIO.removeTree("\(generations)/\(number)")
        }
        SecretStore(stateDirectory: stateDirectory).prune(keeping: keep)
    }

    static func sha256(ofFile path: String) throws(FileSystemError) -> String {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError("open", path: path) }
        defer { close(fd) }
        var hasher = SHA256Hasher()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 { throw FileSystemError("read", path: path) }
            if count == 0 { break }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        }
        return hasher.finalizeHex()
    }
}
