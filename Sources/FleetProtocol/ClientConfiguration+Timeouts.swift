import TOMLKit

extension ClientConfiguration {
    /// `[timeouts]`: how long a build and an activation may take before their process group is killed and the
    /// generation fails like any other, so a hung `nix build` cannot hold the lock (and the host) forever.
    public struct Timeouts: Sendable, Equatable {
        public var buildSeconds: Int
        public var activationSeconds: Int

        public init(buildSeconds: Int = 3600, activationSeconds: Int = 900) {
            self.buildSeconds = buildSeconds
            self.activationSeconds = activationSeconds
        }
    }

    static let timeoutKeys = ["build_seconds", "activation_seconds"]

    static func parseTimeouts(_ table: TOMLTable?, _ reader: inout TOMLReader) -> Timeouts {
        guard let table else { return Timeouts() }
        reader.checkKeys(table, allowed: timeoutKeys, in: "[timeouts]")
        let build = reader.integer(table, "build_seconds", in: "[timeouts]", range: 1...(7 * 86400)) ?? 3600
        let activation = reader.integer(table, "activation_seconds", in: "[timeouts]", range: 1...86400) ?? 900
        return Timeouts(buildSeconds: build, activationSeconds: activation)
    }

    func renderedTimeouts() -> [String] {
        [
            "",
            "# A build or an activation that runs longer is killed (its whole process group) and the generation fails.",
            "[timeouts]",
            "build_seconds = \(timeouts.buildSeconds)",
            "activation_seconds = \(timeouts.activationSeconds)",
        ]
    }

    /// The longest a run can take before it ends by itself: what a unit's `TimeoutStartSec=` must exceed
    /// (connecting and downloading, the build, the activation, the confirmation window, reporting).
    public var longestRunSeconds: Int {
        timeouts.buildSeconds + timeouts.activationSeconds + rollback.confirmTimeoutSeconds + 600
    }
}
