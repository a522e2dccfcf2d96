import Foundation
public import Inventory

/// What a hook receives on its standard input: one JSON object on one line, keys sorted.
///
/// ```json
/// {"at":"2026-11-22T03:16:00Z","details":{"report":"report-20261122T031500123Z-g5.json"},"event":"host-failed",
///  "format":1,"generation":5,"host":"web-01","reason":"nix build exited with status 1: …"}
/// ```
///
/// - `event`: one of ``HookEventKind``'s names (`published`, `build-failed`, `host-applied`, `host-failed`,
///   `host-rolled-back`, `host-silent`, `host-stale`, `update-published`, `update-failed`, `rollout-halted`, `rollout-promoted`);
///   also in the hook's environment as `FLEET_EVENT`. `rollout-promoted` has no host; its `details.ring` names the
///   ring that got the generations.
/// - `host`: the host it is about (also `FLEET_HOST`), absent for the update events, which name their hosts in
///   `details.hosts`; `generation`: the generation it is about, when one is.
/// - `at`: when the server noticed (UTC); `reason`: one line for humans, when there is one.
/// - `details`: strings that depend on the event, e.g. `previousGeneration`, `sourceCommit`, `lastSeen`, `report`.
///
/// A hook must not assume it sees every event in order across hosts, nor that an event it missed is repeated:
/// each event is delivered once, when it is first noticed, and recorded in state.db's `events` table either way.
public struct HookEvent: Codable, Sendable, Equatable {
    public static let currentFormat = 1

    public var format = currentFormat
    public var event: HookEventKind
    public var host: String?
    public var generation: UInt64?
    public var at: String
    public var reason: String?
    public var details: [String: String]

    public init(
        _ event: HookEventKind, host: String?, generation: UInt64? = nil, at: String, reason: String? = nil,
        details: [String: String] = [:]
    ) {
        self.event = event
        self.host = host
        self.generation = generation
        self.at = at
        self.reason = reason
        self.details = details
    }

    /// `published`: `host` was given `generation` (built from `sourceCommit`).
    public static func published(
        host: String, generation: UInt64, previousGeneration: UInt64?, sourceCommit: String, at: String
    ) -> HookEvent {
        var details = ["sourceCommit": sourceCommit]
        if let previousGeneration { details["previousGeneration"] = String(previousGeneration) }
        return HookEvent(.published, host: host, generation: generation, at: at, details: details)
    }

    /// `build-failed`: `host`'s configuration did not build; it keeps its previous generation.
    public static func buildFailed(host: String, reason: String, keptGeneration: UInt64?, at: String) -> HookEvent {
        HookEvent(
            .buildFailed, host: host, generation: keptGeneration, at: at, reason: reason,
            details: keptGeneration.map { ["keptGeneration": String($0)] } ?? [:])
    }

    /// `update-published`: `fleet update` published `hosts` (comma-separated) with new flake inputs; `details`
    /// also hold `inputs` (each host's revisions), `policy` and `commit` (the lock files' commit, or `none`).
    public static func updatePublished(hosts: [String], details: [String: String], at: String) -> HookEvent {
        var details = details
        details["hosts"] = hosts.joined(separator: ",")
        return HookEvent(.updatePublished, host: nil, at: at, details: details)
    }

    /// `update-failed`: `fleet update` found `hosts` that did not build with new flake inputs; `reason` names each
    /// with Nix's error. With `policy` `all` nothing was changed; with `per-host` the others were published.
    public static func updateFailed(hosts: [String], reason: String, details: [String: String], at: String)
        -> HookEvent
    {
        var details = details
        details["hosts"] = hosts.joined(separator: ",")
        return HookEvent(.updateFailed, host: nil, at: at, reason: reason, details: details)
    }

    /// The JSON line written to a hook's standard input (ends with a newline).
    public func encodedLine() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Strings, integers and a string dictionary: encoding cannot fail.
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self) + "\n"
    }
}
