import ClientStateStore
import FleetFiles
import FleetProtocol
import Foundation
import Glibc
import SFTPTransport

/// Steps 5 and 6 of a run: installs the generation's secrets, builds the system (or realises it from the local
/// binary cache), sets the profile, runs `switch-to-configuration`, and confirms it or rolls it back, keeping
/// the activation journal (`pending.json`, ``Journal``) so that a run killed inside the window can be finished
/// by the next one.
///
/// A failed build or activation puts the profile and secrets back; a generation that failed or was rolled back
/// is recorded in the state so it is not tried again until a newer one is published, unless this machine is
/// what failed (a local failure).
struct Activation {
    let configuration: ClientConfiguration
    let endpoint: SSHEndpoint
    /// The other servers of client.toml, which confirm as well when ``endpoint`` cannot (see ``Confirmation``).
    var otherEndpoints: [SSHEndpoint] = []
    let stateDirectory: StateDirectory
    let log: RunLog
    /// What time it is (timestamps, deadlines, durations): the system's, or a test's.
    var clock: WallClock = .system

    private var secrets: SecretStore { SecretStore(stateDirectory: stateDirectory.path) }
    private var system: NixSystem { NixSystem(configuration: configuration, stateDirectory: stateDirectory, log: log) }

    /// The journal a killed run left, if any.
    func pendingJournal() throws(ClientError) -> Journal? {
        try Journal.load(stateDirectory: stateDirectory.path)
    }

    /// Installs secrets, builds, sets the profile and activates; on failure puts the profile and secrets back.
    ///
    /// `boot` only stages the generation for the next boot, so there is nothing to confirm. `switch` and `test`
    /// activate it live (`switch` with `test` first, so a hang or power loss inside the window boots the old
    /// system), then must confirm it (``Confirmation``) or roll it back.
    func apply(_ manifest: Manifest, tree generationDirectory: String, _ attempt: inout RunAttempt) async
        -> RunResult
    {
        let generation = manifest.generation
        var operation = (configuration.operation ?? manifest.operation).rawValue
        attempt.report?.operation = operation
        // Held steady by the run lock since the run decided by them.
        let overlays: [Overlay]
        do { overlays = try OverlayStore(stateDirectory: stateDirectory.path).load() } catch {
            return .localFailure(error.description, generation: generation)
        }
        let overlaySet = OverlayStore.setDigest(overlays)
        if !overlays.isEmpty {
            attempt.report?.overlays = overlays.map { RunReport.Overlay(name: $0.name, digest: $0.digest) }
        }
        let secrets = self.secrets
        let system = self.system
        let built: String
        let previous: NixSystem.Generation?
        // Nil for `test`, which like `nixos-rebuild test` leaves the profile (and so the boot default) alone.
        let made: NixSystem.Generation?
        // The protected units a switch would have disrupted, when the system is staged for boot instead.
        var stagedBecause: [String]?
        do throws(NixSystem.Failure) {
            do {
                try secrets.take(from: generationDirectory, generation: generation)
            } catch {
                throw NixSystem.Failure(
                    step: "secrets", reason: error.description, exitCode: nil, systemError: error.systemError)
            }
            built = try await build(manifest, tree: generationDirectory, overlays: overlays, &attempt)
            attempt.report?.targetSystem = built
            log.phase("built \(built)")
            let change = OverlayProtection.change(overlays: overlays, previousSet: attempt.state.applied?.overlays)
            switch try await protection(of: built, overlaySet: overlaySet, operation: operation, attempt.state) {
            case .proceed: break
            case .refuse(let units):
                return refused(manifest, units: units, change: change, overlays: overlaySet, &attempt)
            case .stageForBoot(let units):
                log.phase(
                    "switching now would stop or restart the protected unit(s) \(units.joined(separator: ", ")) "
                        + "([overlays] protect_units); protect_policy \"boot\": staging it for the next boot")
                operation = Operation.boot.rawValue
                attempt.report?.operation = operation
                stagedBecause = units
            }
            previous = try system.currentGeneration()
            made = operation == Operation.test.rawValue ? nil : try await system.setProfile(to: built)
            attempt.report?.profileGeneration = made?.number
        } catch {
            return failed(manifest, error, overlays: overlaySet, &attempt)
        }

        let journal = Journal(
            generation: generation, contentDigest: manifest.contentDigest, sourceCommit: manifest.sourceCommit,
            operation: operation, system: built, madeProfileGeneration: made?.number,
            previousProfileGeneration: made == nil ? nil : previous?.number,
            // What a rollback activates again: for `test`, what ran before (the last system applied, which a
            // `test` left out of the profile), else the profile's previous generation.
            previousSystem: made == nil ? attempt.state.applied?.system ?? previous?.system : previous?.system,
            previousGeneration: attempt.state.applied?.generation,
            deadline: clock.now().timeIntervalSince1970 + Double(configuration.rollback.confirmTimeoutSeconds),
            snapshotSHA256: manifest.snapshot.sha256,
            startedAt: UTCTime.iso(clock.now()), overlays: overlaySet, pid: getpid())
        let live = operation != Operation.boot.rawValue
        let activationStarted = clock.now()
        do throws(NixSystem.Failure) {
            do {
                try secrets.activate(generation: generation)
                if live { try journal.save(stateDirectory: stateDirectory.path) }
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
            attempt.report?.durations.activation = clock.now().timeIntervalSince(activationStarted)
            await undo(journal)
            return failed(manifest, error, overlays: overlaySet, &attempt)
        }
        attempt.report?.durations.activation = clock.now().timeIntervalSince(activationStarted)
        guard live else {
            let result = appliedResult(journal, &attempt)
            guard let units = stagedBecause else { return result }
            return RunResult(
                outcome: .applied,
                reason: "generation \(generation) staged for next boot (switch-to-configuration boot): switching now "
                    + "would stop or restart the protected unit(s) \(units.joined(separator: ", ")) ([overlays] "
                    + "protect_units, protect_policy \"boot\"); nothing was restarted, it runs after a reboot",
                generation: generation)
        }
        return await confirmOrRollBack(journal, &attempt)
    }

    /// Realises the manifest's toplevel from the local cache when it ships one, else evaluates and builds the
    /// tree; records the build's duration and exit code in the report.
    ///
    /// With host-local overlays, the system is always evaluated and built here: the server's build is of the
    /// fleet's system alone.
    private func build(
        _ manifest: Manifest, tree generationDirectory: String, overlays: [Overlay], _ attempt: inout RunAttempt
    ) async throws(NixSystem.Failure) -> String {
        let buildStarted = clock.now()
        // Added to what the substitution while downloading waited for after the download, if it ran.
        defer {
            let before = attempt.report?.durations.build ?? 0
            attempt.report?.durations.build = before + clock.now().timeIntervalSince(buildStarted)
        }
        do throws(NixSystem.Failure) {
            let built: String
            if !overlays.isEmpty {
                let store = OverlayStore(stateDirectory: stateDirectory.path)
                log.phase(
                    "building nixosConfigurations.\(manifest.attribute) from \(generationDirectory)/tree with the "
                        + "local overlay(s) \(overlays.map(\.name).joined(separator: ", "))")
                built = try await system.buildComposed(
                    tree: generationDirectory + "/tree", attribute: manifest.attribute,
                    overlays: overlays.map { ($0, store.path(of: $0.name)) },
                    wrapperDirectory: stateDirectory.path + "/overlay-build", gcRoot: stateDirectory.buildResult)
                // Built here and rooted: what an earlier run fetched from the fleet's cache is of no more use.
                system.dropCacheLeftovers(cache: stateDirectory.cache)
            } else if let toplevel = manifest.toplevel, manifest.hasCache {
                log.phase(
                    "substituting \(toplevel) from the fleet's binary cache (built on the server; nothing is evaluated here)"
                )
                try await system.realise(
                    toplevel, cache: stateDirectory.cache, trustedKey: configuration.fleetPublicKey.nixFormat,
                    gcRoot: stateDirectory.buildResult)
                built = toplevel
            } else {
                log.phase("building nixosConfigurations.\(manifest.attribute) from \(generationDirectory)/tree")
                built = try await system.build(
                    tree: generationDirectory + "/tree", attribute: manifest.attribute,
                    gcRoot: stateDirectory.buildResult)
                system.dropCacheLeftovers(cache: stateDirectory.cache)
                if let expected = manifest.toplevel, expected != built {
                    log.phase(
                        "note: this build gave \(built), the server's gave \(expected) (an impure or host-dependent build)"
                    )
                }
            }
            attempt.report?.exitCodes.build = 0
            return built
        } catch {
            attempt.report?.exitCodes.build = error.exitCode
            throw error
        }
    }

    /// Finishes an activation that a killed run left waiting for confirmation: confirms it or rolls it back.
    ///
    /// When the machine is running another system than the pending one (it rebooted inside the window, and
    /// booted the old default), the pending generation is rolled back without asking the server.
    func resume(_ pending: Journal, _ attempt: inout RunAttempt) async -> RunResult {
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
        if let running = try? FileIO.readLink(configuration.reboot.currentSystem), running != pending.system {
            let reason =
                "the machine runs \(running), not the pending \(pending.system) (it rebooted inside the window)"
            log.phase("rolling back generation \(pending.generation): \(reason)")
            await undo(pending)
            attempt.state.failed = ClientState.Failed(
                generation: pending.generation, contentDigest: pending.contentDigest, state: .rolledBack,
                reason: reason,
                at: UTCTime.iso(clock.now()), overlays: pending.overlays)
            return RunResult(
                outcome: .rolledBack, reason: "generation \(pending.generation) was rolled back: \(reason)",
                generation: pending.generation)
        }
        // A fresh window, never the remainder of the old one: the old one may be over (the run was killed
        // long ago), and its remainder would give the server and the health checks no time at all.
        var resumed = pending
        let window = configuration.rollback.confirmTimeoutSeconds
        resumed.deadline = clock.now().timeIntervalSince1970 + Double(window)
        log.phase(
            "a fresh confirmation window of \(window) s (the interrupted run's ended at \(UTCTime.iso(Date(timeIntervalSince1970: pending.deadline))))"
        )
        do { try resumed.save(stateDirectory: stateDirectory.path) } catch { log.phase("\(error)") }
        return await confirmOrRollBack(resumed, &attempt)
    }

    /// The confirmation window of a live activation, then its end: made the boot default (`switch`) and
    /// recorded as applied, or rolled back.
    private func confirmOrRollBack(_ pending: Journal, _ attempt: inout RunAttempt) async -> RunResult {
        let deadline = Date(timeIntervalSince1970: pending.deadline)
        log.phase(
            "confirming generation \(pending.generation): a new SSH connection and \(configuration.healthChecks.count) health check(s), until \(UTCTime.iso(deadline))"
        )
        let confirmation = Confirmation(
            configuration: configuration, endpoint: endpoint, otherEndpoints: otherEndpoints, log: log, clock: clock)
        var failure = await confirmation.confirm(generation: pending.generation, deadline: deadline)
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
            await undo(pending)
            let reason = "generation \(pending.generation) was rolled back: \(failure)"
            attempt.state.failed = ClientState.Failed(
                generation: pending.generation, contentDigest: pending.contentDigest, state: .rolledBack,
                reason: failure, at: UTCTime.iso(clock.now()), overlays: pending.overlays)
            return RunResult(
                outcome: .rolledBack,
                reason: reason
                    + "; the previous system is back, and this generation is not tried again until a newer one is published",
                generation: pending.generation)
        }
        return appliedResult(pending, &attempt)
    }

    private func appliedResult(_ pending: Journal, _ attempt: inout RunAttempt) -> RunResult {
        attempt.state.applied = ClientState.Applied(
            generation: pending.generation, contentDigest: pending.contentDigest, sourceCommit: pending.sourceCommit,
            system: pending.system, operation: pending.operation, at: UTCTime.iso(clock.now()),
            overlays: pending.overlays)
        attempt.state.failed = nil
        Journal.remove(stateDirectory: stateDirectory.path)
        stateDirectory.pointCurrent(at: pending.generation)
        stateDirectory.prune(current: pending.generation, keeping: configuration.keepGenerations)
        return RunResult(
            outcome: .applied, reason: "generation \(pending.generation) applied (\(pending.operation))",
            generation: pending.generation)
    }

    /// Asks `switch-to-configuration dry-activate` whether switching to `built` would stop or restart a protected
    /// unit, when the switch is an overlay apply or removal (``OverlayProtection/needsCheck``).
    private func protection(of built: String, overlaySet: String?, operation: String, _ state: ClientState)
        async throws(NixSystem.Failure) -> OverlayProtection.Verdict
    {
        guard
            OverlayProtection.needsCheck(
                configuration.overlays, operation: operation, applied: state.applied?.overlays, overlaySet: overlaySet)
        else { return .proceed }
        log.phase("the overlays change: asking switch-to-configuration dry-activate which units it would restart")
        let dryRun = try await system.dryActivate(built)
        if !dryRun.disrupted.isEmpty {
            log.phase("it would stop or restart: \(dryRun.disrupted.joined(separator: ", "))")
        }
        return OverlayProtection.verdict(dryRun, configuration.overlays, operation: operation)
    }

    /// A switch refused because it would disrupt protected units: nothing was changed (neither the profile nor
    /// the secrets link had been touched yet), and the generation is recorded as failed with these overlays so the next run does not
    /// build and ask again (unless the policy becomes `boot`, ``RunDecision``).
    private func refused(
        _ manifest: Manifest, units: [String], change: String, overlays: String?, _ attempt: inout RunAttempt
    ) -> RunResult {
        let reason = OverlayProtection.refusal(units: units, change: change)
        attempt.state.failed = ClientState.Failed(
            generation: manifest.generation, contentDigest: manifest.contentDigest, state: .failed, reason: reason,
            at: UTCTime.iso(clock.now()), overlays: overlays)
        return RunResult(
            outcome: .failed,
            reason: "generation \(manifest.generation): \(reason) ([overlays] protect_units); "
                + OverlayProtection.howToProceed,
            generation: manifest.generation)
    }

    /// A failed generation, not tried again until a newer one is published; unless this machine is what failed
    /// (a full or unwritable state directory while installing secrets or writing the journal), which is a local
    /// failure: the generation itself is fine, and the next run tries it again; or the server sent a damaged NAR
    /// (``NixSystem/Failure/isServerDamage``), a failed run that is not held against the generation either.
    private func failed(
        _ manifest: Manifest, _ failure: NixSystem.Failure, overlays: String?, _ attempt: inout RunAttempt
    ) -> RunResult {
        if failure.isLocal || failure.systemError.map(RunResult.isLocalFailure(errno:)) == true {
            return .localFailure(
                "generation \(manifest.generation): \(failure.description)", generation: manifest.generation)
        }
        if failure.isServerDamage {
            return RunResult(
                outcome: .failed, reason: "generation \(manifest.generation): \(failure.description)",
                generation: manifest.generation)
        }
        attempt.state.failed = ClientState.Failed(
            generation: manifest.generation, contentDigest: manifest.contentDigest, state: .failed,
            reason: failure.description, at: UTCTime.iso(clock.now()), overlays: overlays)
        return RunResult(
            outcome: .failed,
            reason:
                "generation \(manifest.generation): \(failure.description); the previous system stays, and this generation is not tried again until a newer one is published",
            generation: manifest.generation)
    }

    /// Puts the profile and secrets back as they were before the activation, re-activates the previous system
    /// (for `switch`, with `switch`, so the boot default is the previous system too; for `test`, with `test`,
    /// leaving the profile it never touched), and drops the journal.
    private func undo(_ pending: Journal) async {
        let system = self.system
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
        Journal.remove(stateDirectory: stateDirectory.path)
    }
}
