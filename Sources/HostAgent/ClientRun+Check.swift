public import ClientStateStore
import FleetFiles
import FleetProtocol
import Foundation
import Glibc
import SFTPTransport

extension ClientRun {
    /// `fleet-client check`: what a run would see, without applying anything or changing the client's state.
    ///
    /// Connects (pinned host key, authentication); unless `connectOnly`, reads and verifies the manifest
    /// against the saved state (so a downgrade shows as refused); with `downloadInto`, also downloads the
    /// snapshot, checks it and extracts it into that directory for inspection. The directory must not exist:
    /// it is created first (so an existing path, `.` included, is refused by name before anything is read),
    /// and only what this check created is ever removed. Takes no lock and uploads nothing.
    public func check(connectOnly: Bool, downloadInto directory: String?) async throws(ClientError) -> RunResult {
        let state = try ClientState.load(stateDirectory: stateDirectory.path)
        let target = directory.map { directory in
            directory.hasPrefix("/") ? directory : FileManager.default.currentDirectoryPath + "/" + directory
        }
        if let directory, let target {
            do {
                // mkdir(2) refuses any existing path, a dangling symbolic link included, and makes it ours.
                try FileIO.createNewDirectory(target, mode: 0o700)
            } catch {
                throw ClientError(
                    error.errno == EEXIST
                        ? "--download \(String(reflecting: directory)): \(target) already exists; check extracts only "
                            + "into a new directory, and leaves existing ones alone (nothing was downloaded)"
                        : "--download \(String(reflecting: directory)): cannot create \(target): \(error)")
            }
        }
        // On any result but an extraction, the directory made above goes again: it is empty then.
        var extracted = false
        defer { if let target, !extracted { try? FileIO.removeEmptyDirectory(target) } }
        // The servers in a run's order: the summary names the one that served, and those passed over.
        let checked = await session.withFailover(openingSFTP: !connectOnly) {
            connection, contact -> ServerVerdict<RunResult> in
            if connectOnly {
                return .use(
                    .next(
                        RunResult(
                            outcome: .unchanged,
                            reason:
                                "connected and authenticated as \(connection.endpoint.user)@\(connection.endpoint.server) (host key \(connection.hostKeyFingerprint))"
                        )))
            }
            let manifest: Manifest
            switch await manifests.fetch(
                over: connection, lastSeen: state.lastSeen, expiryRequired: state.manifestsExpire ?? false,
                now: clock.now())
            {
            case .next(let verified): manifest = verified
            case .done(let result): return contact.canSkip ? .skip(result) : .use(.done(result))
            }
            var summary =
                "generation \(manifest.generation) verifies (commit \(manifest.sourceCommit), published \(manifest.publishedAt), operation \(manifest.operation))"
            if let applied = state.applied {
                summary +=
                    applied.generation == manifest.generation
                    ? "; it is applied" : "; generation \(applied.generation) is applied"
            }
            if let target {
                var report = RunReport(host: configuration.host.value, state: .unchanged, startedAt: "", finishedAt: "")
                let placement = SnapshotFetch.Placement.createdDirectory(target)
                switch await snapshots.fetch(manifest, over: connection, into: placement, report: &report) {
                case .next(let directory):
                    extracted = true
                    summary += "; its snapshot is extracted into \(directory)"
                case .done(let result):
                    return .use(.done(result))
                }
            }
            return .use(.next(RunResult(outcome: .unchanged, reason: summary, generation: manifest.generation)))
        }
        var result: RunResult
        switch checked.step {
        case .next(let checkedResult), .done(let checkedResult): result = checkedResult
        }
        if let server = checked.server, !configuration.mirrors.isEmpty {
            result.reason += " [server: \(server.label)]"
        }
        if checked.server != nil, !checked.unreported, !checked.skipped.isEmpty {
            result.reason +=
                " [passed over: " + checked.skipped.map { "\($0.name): \($0.reason)" }.joined(separator: "; ") + "]"
        }
        return result
    }
}
