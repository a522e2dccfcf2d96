import FleetFiles
import FleetProtocol
import Foundation
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
        let state = try ClientState.load(stateDirectory: stateDirectory)
        let target = directory.map { directory in
            directory.hasPrefix("/") ? directory : FileManager.default.currentDirectoryPath + "/" + directory
        }
        if let directory, let target {
            // mkdir(2) refuses any existing path, a dangling symbolic link included, and makes it ours.
            guard mkdir(target, 0o700) == 0 else {
                let error = errno
                throw ClientError(
                    error == EEXIST
                        ? "--download \(String(reflecting: directory)): \(target) already exists; check extracts only "
                            + "into a new directory, and leaves existing ones alone (nothing was downloaded)"
                        : "--download \(String(reflecting: directory)): cannot create \(target): "
                            + String(cString: strerror(error)))
            }
        }
        // On any result but an extraction, the directory made above goes again: it is empty then.
        var extracted = false
        defer { if let target, !extracted { rmdir(target) } }
        let connection: SFTPConnection
        switch await connect(openingSFTP: !connectOnly) {
        case .next(let connected): connection = connected
        case .done(let result): return result
        }
        defer { withExtendedLifetime(connection) {} }
        if connectOnly {
            await connection.close()
            return RunResult(
                outcome: .unchanged,
                reason:
                    "connected and authenticated as \(endpoint.user)@\(endpoint.server) (host key \(connection.hostKeyFingerprint))"
            )
        }
        let manifest: Manifest
        switch await fetchManifest(over: connection, state: state) {
        case .next(let verified): manifest = verified
        case .done(let result):
            await connection.close()
            return result
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
            switch await fetchSnapshot(manifest, over: connection, into: .createdDirectory(target), report: &report) {
            case .next(let directory):
                extracted = true
                summary += "; its snapshot is extracted into \(directory)"
            case .done(let result):
                await connection.close()
                return result
            }
        }
        await connection.close()
        return RunResult(outcome: .unchanged, reason: summary, generation: manifest.generation)
    }
}
