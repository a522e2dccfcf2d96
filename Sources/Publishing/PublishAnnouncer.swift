public import FleetHooks
public import FleetProtocol
public import Foundation
public import Inventory

/// Tells fleet.toml's hooks what a publish did, in one call: `published` for each host given a new generation,
/// `build-failed` for each host the build gate held back, in the order the hosts were published.
///
/// The review announces host events the same way (`FleetReview`'s `EventAnnouncer`, then ``HookRunner``), so
/// every hook fires through ``HookRunner``, which logs a failing hook and records it as `hook-failed`. The facts
/// themselves are already in state.db's `events` when this runs, written by the ``Publisher`` with what they
/// report (`published` in the transaction that records the publication, `build-failed` with the build), so that
/// a publish killed before its hooks run still leaves them recorded; this type only turns results into hook
/// events and fires them.
///
/// Run it after the publish lock is released: a hook never holds a host, or the next publish, back.
public struct PublishAnnouncer: Sendable {
    let hooks: HookRunner

    public init(
        _ configuration: FleetConfiguration, log: @escaping @Sendable (String) -> Void = HookRunner.standardError
    ) {
        hooks = HookRunner(configuration, log: log)
    }

    /// The hook events of a publish's results, in their order; none for a dry run, which changed nothing.
    public static func events(of run: PublishRun, at: String) -> [HookEvent] {
        guard !run.dryRun else { return [] }
        return run.results.compactMap { result -> HookEvent? in
            switch result.status {
            case .published:
                guard let generation = result.generation else { return nil }
                return .published(
                    host: result.host.value, generation: generation, previousGeneration: result.previousGeneration,
                    sourceCommit: result.sourceCommit ?? "none", at: at)
            case .buildFailed:
                return .buildFailed(
                    host: result.host.value, reason: result.reason ?? "did not build",
                    keptGeneration: result.generation, at: at)
            case .unchanged, .refused, .wouldPublish, .wouldBuild, .wouldFail, .stillFailing, .staged:
                return nil
            }
        }
    }

    /// Fires the run's events at the hooks that want them. Never throws: see ``HookRunner``.
    @discardableResult
    public func announce(_ run: PublishRun, now: Date = WallClock.system.now()) async -> [HookRunner.Delivery] {
        await hooks.fire(Self.events(of: run, at: UTCTime.iso(now)))
    }
}
