public import FleetProtocol
import Foundation
public import ServerStore

/// What building one host's configuration on the server gave.
public struct BuildResult: Sendable, Codable, Equatable {
    public enum Status: String, Sendable, Codable {
        /// Built now.
        case built
        /// The same tree was built before; its result is still in the store.
        case reused
        case failed
    }

    public let host: HostName
    public var status: Status
    /// The system's store path, when it built.
    public var toplevel: String?
    /// The build log on the server (`<state_dir>/builds/<host>/…log`).
    public var log: String?
    /// Why it failed: Nix's last error line.
    public var reason: String?
    public var seconds: Double
    /// The hash of the tree that was built (secrets are never part of a build).
    public var treeDigest: String

    public var succeeded: Bool { status != .failed }
}

extension StateStore {
    /// Every build is an event in state.db: `built`, `build-reused` or `build-failed`, with its log. A failure is
    /// also remembered with its tree (so the next publish does not build the same tree again); a success forgets
    /// the host's remembered failure.
    public func record(_ build: BuildResult) throws {
        let kind: EventKind =
            switch build.status {
            case .built: .built
            case .reused: .buildReused
            case .failed: .buildFailed
            }
        var detail = ["tree": build.treeDigest, "seconds": String(format: "%.1f", build.seconds)]
        detail["toplevel"] = build.toplevel
        detail["log"] = build.log
        detail["reason"] = build.reason
        let failure =
            build.succeeded
            ? nil
            : BuildFailure(
                treeDigest: build.treeDigest, failedAt: UTCTime.iso(WallClock.system.now()), reason: build.reason,
                log: build.log)
        try recordBuild(host: build.host, kind: kind, detail: detail, failure: failure)
    }
}
