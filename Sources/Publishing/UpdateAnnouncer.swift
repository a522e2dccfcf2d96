public import FleetHooks
public import FleetProtocol
public import Foundation
public import Inventory

/// Tells fleet.toml's hooks what a `fleet update` did: the publish's own `published` (and `build-failed`) events,
/// then one `update-published` naming the hosts published with new inputs, and one `update-failed` naming the
/// hosts that did not build with them. Run it after the publish lock is released, like ``PublishAnnouncer``.
///
/// A failure that only the build gate's memory repeats (the same tree failed before, nothing changed since) is
/// not announced again: an update timer does not call someone every time it finds upstream still broken.
public struct UpdateAnnouncer: Sendable {
    let hooks: HookRunner

    public init(
        _ configuration: FleetConfiguration, log: @escaping @Sendable (String) -> Void = HookRunner.standardError
    ) {
        hooks = HookRunner(configuration, log: log)
    }

    /// The hook events of an update, in order; none for a dry run.
    public static func events(of run: UpdateRun, dryRun: Bool, at: String) -> [HookEvent] {
        guard !dryRun else { return [] }
        var events = run.publish.map { PublishAnnouncer.events(of: $0, at: at) } ?? []
        if let detail = publishedDetail(run) {
            events.append(.updatePublished(hosts: published(run).map(\.host), details: detail, at: at))
        }
        if let detail = failedDetail(run) {
            events.append(
                .updateFailed(
                    hosts: run.failures.map(\.host), reason: detail["reason"] ?? "", details: detail, at: at))
        }
        return events
    }

    /// Fires the update's events at the hooks that want them. Never throws: see ``HookRunner``.
    @discardableResult
    public func announce(_ run: UpdateRun, dryRun: Bool, now: Date = WallClock.system.now()) async
        -> [HookRunner.Delivery]
    {
        await hooks.fire(Self.events(of: run, dryRun: dryRun, at: UTCTime.iso(now)))
    }

    static func published(_ run: UpdateRun) -> [HostUpdate] {
        run.hosts.filter { $0.status == .published && !$0.inputs.isEmpty }
    }

    /// `update-published`'s detail (state.db and hooks alike), or nil when no host was published with new inputs.
    static func publishedDetail(_ run: UpdateRun) -> [String: String]? {
        let hosts = published(run)
        guard !hosts.isEmpty else { return nil }
        return [
            "hosts": hosts.map(\.host).joined(separator: ","),
            "inputs": hosts.map { "\($0.host): \($0.inputSummary)" }.joined(separator: "; "),
            "policy": run.policy.rawValue, "commit": run.commit ?? "none", "baseCommit": run.baseCommit,
        ]
    }

    /// `update-failed`'s detail, or nil when no host failed, or every failure is one the build gate remembered.
    static func failedDetail(_ run: UpdateRun) -> [String: String]? {
        let failures = run.failures
        guard failures.contains(where: { !$0.remembered }) else { return nil }
        return [
            "hosts": failures.map(\.host).joined(separator: ","),
            "reason": failures.map { "\($0.host): \($0.reason ?? "failed")" }.joined(separator: "; "),
            "policy": run.policy.rawValue,
            "changed": run.outcome == .failed ? "nothing" : "the other hosts were published",
        ]
    }
}
