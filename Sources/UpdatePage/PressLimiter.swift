/// How often a press may start a run: at most once per `minimumInterval`.
///
/// A run costs an SSH session on the server and, when something changed, a download and a Nix build; a
/// stuck key, a script or an impatient user must not turn the button into a loop. Presses while a run is
/// going cost nothing (they show the running one) and are not counted.
struct PressLimiter: Sendable {
    let minimumInterval: Duration
    private(set) var lastStart: ContinuousClock.Instant?

    init(minimumInterval: Duration) {
        self.minimumInterval = max(minimumInterval, .zero)
    }

    /// Nil when a run may start at `now`; otherwise how long ago the last one started and how long to wait.
    func refusal(at now: ContinuousClock.Instant) -> (startedAgo: Duration, wait: Duration)? {
        guard let lastStart else { return nil }
        let elapsed = now - lastStart
        guard elapsed < minimumInterval else { return nil }
        return (elapsed, minimumInterval - elapsed)
    }

    mutating func recordStart(at now: ContinuousClock.Instant) {
        lastStart = now
    }
}
