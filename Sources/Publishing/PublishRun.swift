/// What one ``Publisher/publish(_:now:progress:)`` did: each host's result, in the order the hosts were given,
/// and the problems of the run as a whole, returned together instead of being left on the publisher.
public struct PublishRun: Sendable, Equatable {
    /// One result per host, in the order given.
    public var results: [PublishResult]
    /// Problems of the run as a whole (not of one host) that did not stop it.
    public var warnings: [String]
    /// Whether this was a dry run: nothing was written, and nothing is announced to the hooks.
    public var dryRun: Bool

    public init(results: [PublishResult], warnings: [String] = [], dryRun: Bool) {
        self.results = results
        self.warnings = warnings
        self.dryRun = dryRun
    }

    /// A host was refused, did not build, or (dry run with `--build`) would not build: `fleet publish` exits 1.
    public var hasFailures: Bool {
        results.contains { [.refused, .buildFailed, .stillFailing, .wouldFail].contains($0.status) }
    }
}
