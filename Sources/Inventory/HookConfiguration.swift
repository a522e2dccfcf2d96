/// What a hook can be told about. The raw values are the names used in fleet.toml's `events` list, in the
/// JSON a hook receives, and as the `kind` of the matching row of state.db's `events` table.
public enum HookEventKind: String, Sendable, CaseIterable, Codable, Hashable {
    /// A host was given a new generation (`fleet publish`).
    case published
    /// A host's configuration failed to build on the server; it keeps its previous generation.
    case buildFailed = "build-failed"
    /// A host reported that it runs the published generation.
    case hostApplied = "host-applied"
    /// A host's build or activation of the published generation failed.
    case hostFailed = "host-failed"
    /// A host activated the published generation, could not confirm it, and went back.
    case hostRolledBack = "host-rolled-back"
    /// A host has not been heard from for longer than its silence limit.
    case hostSilent = "host-silent"
    /// A host was served a manifest past its expiry (a stale mirror, or a replay in the path) and applies nothing
    /// until it gets a fresh one: `fleet publish --refresh` re-signs, `fleet mirror push` updates a mirror.
    case hostStale = "host-stale"
    /// `fleet update` published the hosts that built with new flake inputs.
    case updatePublished = "update-published"
    /// `fleet update` found hosts that did not build with new flake inputs (all or nothing: nothing changed).
    case updateFailed = "update-failed"
    /// A rollout stopped: a host of its ring failed, rolled back or went silent beyond `max_failures`; nothing
    /// more is published to later rings until `fleet rollout resume` or a newer publish.
    case rolloutHalted = "rollout-halted"
    /// A rollout gave its generation to the next ring (`details.ring`).
    case rolloutPromoted = "rollout-promoted"
}

/// One `[[hooks]]` table of fleet.toml: a command that receives events as JSON on its standard input.
///
/// Hooks run without a shell, one process per event, with a timeout; a hook that fails or hangs is logged
/// and never holds up what fired it.
public struct HookConfiguration: Sendable, Equatable {
    /// The program (an absolute path) and its arguments.
    public var command: [String]
    /// The events it receives.
    public var events: [HookEventKind]
    public var timeoutSeconds: Int

    public static let defaultTimeoutSeconds = 10

    public init(command: [String], events: [HookEventKind] = HookEventKind.allCases, timeoutSeconds: Int = 10) {
        self.command = command
        self.events = events
        self.timeoutSeconds = timeoutSeconds
    }

    public func receives(_ kind: HookEventKind) -> Bool { events.contains(kind) }
}
