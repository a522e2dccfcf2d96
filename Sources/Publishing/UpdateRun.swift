import BuildGate

/// What one `fleet update` did: each host's outcome, what was committed and published, in one value.
public struct UpdateRun: Sendable, Equatable {
    public enum Outcome: String, Sendable, Codable {
        /// No selected host's inputs moved: nothing to build or publish.
        case current
        /// Every host whose inputs moved built and was published.
        case published
        /// `all`: some host did not build, so nothing was changed anywhere.
        case failed
        /// `per-host`: the hosts that built were published; the others keep their generation.
        case partial
        /// `--dry-run`: every changed host built; an update would publish them (`all`) or these (`per-host`).
        case wouldPublish = "would-publish"
        /// `--dry-run`: some host did not build.
        case wouldFail = "would-fail"
    }

    public var outcome: Outcome
    public var policy: UpdateOptions.Policy
    /// HEAD when the update started.
    public var baseCommit: String
    /// The commit of the lock files (`--commit`), when one was made.
    public var commit: String?
    /// One entry per selected host, in the order given.
    public var hosts: [HostUpdate]
    /// The publish of the hosts that built (nil when nothing was published).
    public var publish: PublishRun?
    public var warnings: [String]

    /// The hosts that did not build with the new inputs (or could not be updated), with why.
    public var failures: [HostUpdate] { hosts.filter { $0.status == .failed } }

    /// `fleet update` exits 1 when a host failed (whatever the policy) or its publish refused a host.
    public var hasFailures: Bool { !failures.isEmpty || (publish?.hasFailures ?? false) }
}

/// One host in a `fleet update`.
public struct HostUpdate: Sendable, Equatable, Codable {
    public enum Status: String, Sendable, Codable {
        /// Not part of this update: no flake.lock, or none of the inputs named.
        case skipped
        /// Its inputs are already the newest.
        case current
        /// Built with the new inputs and published (or, published before with them, left unchanged).
        case published
        /// Built with the new inputs, but not published: another host failed (`all`), or `--dry-run`.
        case held
        /// Its inputs could not be updated, or it did not build with them: it keeps its generation and its lock.
        case failed
    }

    /// One input that moved: its locked revision before and after.
    public struct InputChange: Sendable, Equatable, Codable {
        public var name: String
        public var from: String
        public var to: String

        public init(name: String, from: String, to: String) {
            self.name = name
            self.from = from
            self.to = to
        }
    }

    public var host: String
    public var status: Status
    public var inputs: [InputChange]
    /// Why it failed, was skipped or held; Nix's error line for a failed build.
    public var reason: String?
    /// The build log on the server.
    public var log: String?
    /// The system built with the new inputs.
    public var toplevel: String?
    /// The generation its manifest names after the update.
    public var generation: UInt64?
    /// Whether this failure is the build gate's memory (the same tree failed before) rather than a build now:
    /// not announced again.
    public var remembered: Bool

    public init(host: String, status: Status, inputs: [InputChange] = [], reason: String? = nil) {
        self.host = host
        self.status = status
        self.inputs = inputs
        self.reason = reason
        self.remembered = false
    }

    /// "pkgs 8c0a00328386 → 4b1c93a77b59, …", for tables and commit messages.
    public var inputSummary: String {
        inputs.map { change in
            "\(change.name) \(FlakeLock.Input(name: change.name, revision: change.from).shortRevision) → "
                + FlakeLock.Input(name: change.name, revision: change.to).shortRevision
        }.joined(separator: ", ")
    }
}
