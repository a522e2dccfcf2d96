import CommandRunner
import FleetProtocol
import Foundation
public import Inventory
import ServerStore

/// Runs fleet.toml's `[[hooks]]` for events: each hook that wants an event gets one process with the event's
/// JSON (``HookEvent``) on its standard input, `FLEET_EVENT` and `FLEET_HOST` in its environment, no shell,
/// and its `timeout_seconds` (then its whole process group is killed).
///
/// Hooks exist to tell people and other systems; they must never hold up or break what fired them. So
/// ``fire(_:)-(HookEvent)`` does not throw: a hook that cannot start, exits non-zero or times out is written to
/// standard error and recorded as a `hook-failed` event in state.db, and the caller goes on. Different hooks run
/// concurrently; one hook gets its events one at a time, in order. A hook that times out twice in one call is
/// skipped for the rest of that call, so that a hanging hook costs at most two timeouts, not one per event.
///
/// Every hook fires through here, from two callers: `PublishAnnouncer` (Publishing) after a publish, and the
/// review (`Review.refresh`) for host events. Neither runs a hook itself.
public struct HookRunner: Sendable {
    public let hooks: [HookConfiguration]
    /// Where state.db is, to record failures.
    public let stateDirectory: String
    private let log: @Sendable (String) -> Void

    /// Timeouts after which a hook is skipped for the rest of one ``fire(_:)-([HookEvent])`` call.
    static let timeoutsBeforeSkipping = 2
    /// Output kept from a hook (it is only read for the first line of a failure's standard error).
    static let outputLimit = 1 << 20

    /// What happened to one event at one hook.
    public struct Delivery: Sendable, Equatable {
        public let event: HookEvent
        public let command: [String]
        /// nil when the hook exited 0.
        public let failure: HookFailure?
    }

    public init(
        _ configuration: FleetConfiguration, log: @escaping @Sendable (String) -> Void = HookRunner.standardError
    ) {
        self.init(hooks: configuration.hooks, stateDirectory: configuration.server.stateDirectory, log: log)
    }

    public init(
        hooks: [HookConfiguration], stateDirectory: String,
        log: @escaping @Sendable (String) -> Void = HookRunner.standardError
    ) {
        self.hooks = hooks
        self.stateDirectory = stateDirectory
        self.log = log
    }

    /// Writes a line to standard error, where a failing hook is reported by default.
    public static let standardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// Delivers one event to every hook that wants it. Never throws; see the type's description.
    @discardableResult
    public func fire(_ event: HookEvent) async -> [Delivery] { await fire([event]) }

    /// Delivers events, in order per hook, to every hook that wants them. Never throws.
    @discardableResult
    public func fire(_ events: [HookEvent]) async -> [Delivery] {
        guard !hooks.isEmpty, !events.isEmpty else { return [] }
        let parts = await withTaskGroup(of: (Int, [Delivery]).self) { group in
            for (index, hook) in hooks.enumerated() {
                let wanted = events.filter { hook.receives($0.event) }
                if wanted.isEmpty { continue }
                group.addTask { (index, await Self.deliver(wanted, to: hook)) }
            }
            var parts: [(Int, [Delivery])] = []
            for await part in group { parts.append(part) }
            return parts
        }
        let deliveries = parts.sorted { $0.0 < $1.0 }.flatMap(\.1)
        let failed = deliveries.filter { $0.failure != nil }
        if !failed.isEmpty { record(failed) }
        return deliveries
    }

    private static func deliver(_ events: [HookEvent], to hook: HookConfiguration) async -> [Delivery] {
        let commandLine = hook.command.joined(separator: " ")
        var timeouts = 0
        var deliveries: [Delivery] = []
        for event in events {
            if timeouts >= timeoutsBeforeSkipping {
                deliveries.append(
                    Delivery(
                        event: event, command: hook.command,
                        failure: HookFailure(
                            command: commandLine,
                            reason: "was skipped for this event: it timed out \(timeouts) times in a row just before")))
                continue
            }
            var environment = ["FLEET_EVENT": event.event.rawValue]
            if let host = event.host { environment["FLEET_HOST"] = host }
            let failure: HookFailure?
            do {
                let output = try await Command.run(
                    hook.command[0], Array(hook.command.dropFirst()), environment: environment,
                    input: event.encodedLine(), outputLimit: outputLimit, timeout: .seconds(hook.timeoutSeconds))
                if output.succeeded {
                    failure = nil
                    timeouts = 0
                } else {
                    let firstLine = output.standardError.trimmingWhitespace().split(separator: "\n").first.map(
                        String.init)
                    failure = HookFailure(
                        command: commandLine,
                        reason: "exited with status \(output.exitCode)"
                            + (firstLine.map { ": \(quoted(String($0.prefix(300))))" } ?? ""))
                    timeouts = 0
                }
            } catch {
                let timedOut = if case .timedOut = error.code { true } else { false }
                if timedOut { timeouts += 1 }
                failure = HookFailure(
                    command: commandLine,
                    reason: timedOut ? "did not finish within \(hook.timeoutSeconds) s and was killed" : error.reason,
                    timedOut: timedOut)
            }
            deliveries.append(Delivery(event: event, command: hook.command, failure: failure))
        }
        return deliveries
    }

    /// Standard error and state.db's `events` (`hook-failed`, with the event, the command and the reason).
    private func record(_ failed: [Delivery]) {
        for delivery in failed {
            guard let failure = delivery.failure else { continue }
            log(
                "fleet: \(failure) (event \(delivery.event.event.rawValue)"
                    + "\(delivery.event.host.map { " for \($0)" } ?? ""))"
            )
        }
        do {
            let store = try StateStore(stateDirectory: stateDirectory)
            for delivery in failed {
                guard let failure = delivery.failure else { continue }
                try store.recordEvent(
                    host: delivery.event.host.flatMap { try? HostName($0) }, kind: .hookFailed,
                    detail: [
                        "event": delivery.event.event.rawValue, "command": failure.command, "reason": failure.reason,
                        "generation": delivery.event.generation.map(String.init) ?? "",
                    ])
            }
        } catch {
            log(
                "fleet: could not record \(failed.count) hook failure(s) in "
                    + "\(stateDirectory)/\(StateDatabase.fileName): \(error)"
            )
        }
    }
}
