import CommandRunner
import FleetFiles
public import FleetProtocol
public import FleetReview
import Foundation
import Inventory

/// A published fleet (FleetFixture, no sshd) whose hosts' `logs/` a test fills by hand, as root, with what a
/// real or a hostile fleet-client could upload; and the review side to read them back.
public struct ReviewFixture: Sendable {
    public let fixture: FleetFixture
    public let hosts: [String]

    /// Publishes `hosts` (generation 1 each). `server` goes into `[server]`, `defaults` into `[defaults]`,
    /// `host[name]` into that host's table, `extraToml` at the end (e.g. `[[hooks]]`).
    public init(
        hosts: [String], server: String = "", defaults: String = "", host: [String: String] = [:],
        extraToml: String = ""
    ) async throws {
        fixture = try FleetFixture(hosts: hosts)
        self.hosts = hosts
        var toml =
            "[server]\nchroot_root = \"\(fixture.chrootRoot)\"\nstate_dir = \"\(fixture.stateDirectory)\"\n\(server)\n"
        if !defaults.isEmpty { toml += "[defaults]\n\(defaults)\n" }
        for name in hosts {
            toml += "[hosts.\(name)]\nkey = \"\(KeyPair.publicLine(forHost: name))\"\n\(host[name] ?? "")\n"
        }
        try fixture.write("fleet.toml", toml + extraToml)
        let output = try await fixture.fleet(["publish"])
        guard output.exitCode == 0 else {
            fixture.remove()
            throw TestSupportError("fleet publish failed: \(output.standardOutput)\(output.standardError)")
        }
    }

    public func remove() { fixture.remove() }

    public func logs(_ host: String) -> String { fixture.chrootRoot + "/" + host + "/logs" }

    /// Names in the host's logs/, sorted.
    public func listing(_ host: String) throws -> [String] { try FileIO.listDirectory(logs(host)).sorted() }

    /// A `Review` on the fixture (the library, as `fleet status` uses it).
    public func review(limits: IngestLimits = IngestLimits()) throws -> Review {
        let configuration = try fixture.configuration().overriding(
            chrootRoot: (fixture.chrootRoot, "the fixture"), stateDirectory: (fixture.stateDirectory, "the fixture"))
        return try Review(configuration: configuration, limits: limits, hookLog: { _ in })
    }

    /// One refresh of every host.
    public func refresh(limits: IngestLimits = IngestLimits(), now: Int64? = nil) async throws -> Review.Snapshot {
        let review = try review(limits: limits)
        return try await review.refresh(try review.hosts([]), now: now)
    }

    public func status(_ snapshot: Review.Snapshot, _ host: String) throws -> HostStatus {
        guard let row = snapshot.hosts.first(where: { $0.host == host }) else {
            throw TestSupportError("no status row for \(host)")
        }
        return row
    }

    /// `fleet status --json`, decoded.
    public func statusJSON(_ arguments: [String] = []) async throws -> [HostStatus] {
        let output = try await fixture.fleet(["status", "--json"] + arguments)
        guard output.exitCode == 0 else { throw TestSupportError("fleet status failed: \(output.standardError)") }
        struct Output: Decodable { var hosts: [HostStatus] }
        return try JSONDecoder().decode(Output.self, from: Data(output.standardOutput.utf8)).hosts
    }

    // MARK: - Planting uploads

    /// `YYYYMMDDTHHMMSSmmmZ` for run number `index` (a minute apart, from 2026-11-22 01:00 UTC).
    public static func stem(_ index: Int) -> String {
        String(format: "20261122T%02d%02d00%03dZ", 1 + index / 60, index % 60, index % 1000)
    }

    /// A report as fleet-client writes it, `edit`ed, at `logs/report-<stem>[-g<gen>].json`.
    @discardableResult
    public func plantReport(
        _ host: String, _ index: Int, state: RunOutcome = .applied, generation: UInt64? = 1, reason: String? = nil,
        withLog: Bool = true, edit: (inout RunReport) -> Void = { _ in }
    ) throws -> String {
        let stem = Self.stem(index) + (generation.map { "-g\($0)" } ?? "")
        var report = RunReport(
            host: host, state: state, startedAt: "2026-11-22T01:00:00Z", finishedAt: "2026-11-22T01:00:30Z")
        report.generation = generation
        report.previousGeneration = state == .applied ? nil : (generation.map { $0 > 1 ? $0 - 1 : nil } ?? nil)
        report.reason = reason
        report.durations.total = 30
        report.rebootNeeded = false
        if withLog {
            report.log = "log-\(stem).txt"
            try plant(host, "log-\(stem).txt", Array("log of run \(index) on \(host)\nnix build …\n".utf8))
        }
        edit(&report)
        let name = "report-\(stem).json"
        // As fleet-client does it: under a temporary name, then renamed, so no ingest sees half a report.
        try plant(host, ".fleet-tmp-" + name, report.encoded())
        guard rename(logs(host) + "/" + ".fleet-tmp-" + name, logs(host) + "/" + name) == 0 else {
            throw FileSystemError("rename", path: logs(host) + "/" + name)
        }
        return name
    }

    public func plantHeartbeat(
        _ host: String, applied: UInt64?, failed: UInt64? = nil, lastResult: RunOutcome = .unchanged,
        reason: String? = nil,
        rebootNeeded: Bool? = false
    ) throws {
        let beat = Heartbeat(
            host: host, at: "2026-11-22T02:00:00Z", appliedGeneration: applied, seenGeneration: applied,
            failedGeneration: failed, lastResult: lastResult, reason: reason, rebootNeeded: rebootNeeded)
        // Replaced by rename, as fleet-client does: a new inode each time.
        try FileIO.writeAtomically(beat.encoded(), to: logs(host) + "/heartbeat.json", mode: 0o640)
    }

    public func plant(_ host: String, _ name: String, _ bytes: [UInt8]) throws {
        let path = logs(host) + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw FileSystemError("open", path: path) }
        defer { close(fd) }
        try FileIO.writeAll(fd: fd, bytes, path: path)
    }

    public func plant(_ host: String, _ name: String, text: String) throws { try plant(host, name, Array(text.utf8)) }

    /// Sets a file's mtime (the server's receive time) to `secondsAgo` in the past, without following links.
    public func age(_ host: String, _ name: String, secondsAgo: Int) throws {
        var times = [timespec](repeating: timespec(tv_sec: time(nil) - secondsAgo, tv_nsec: 0), count: 2)
        guard utimensat(AT_FDCWD, logs(host) + "/" + name, &times, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw FileSystemError("utimensat", path: logs(host) + "/" + name)
        }
    }
}
