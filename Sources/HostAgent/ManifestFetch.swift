import FleetProtocol
import Foundation
import SFTPTransport

/// Step 2 of a run (and of `check`): reads `/manifest` and accepts it only when its signature verifies and
/// ``ManifestPolicy`` allows it (this host, no downgrade, no replay, a sane snapshot and attribute), and it is
/// not stale (expired, or without expiry once `expiryRequired`).
struct ManifestFetch {
    let configuration: ClientConfiguration
    let log: RunLog

    /// - Returns: the verified manifest, or the run's result: refused, unreachable, or unchanged when nothing
    ///   was published yet.
    func fetch(
        over connection: SFTPConnection, lastSeen: ManifestPolicy.Seen?, expiryRequired: Bool, now: Date
    ) async -> Step<Manifest> {
        log.phase("reading the manifest")
        let read: Result<[UInt8], SSHError>
        do {
            read = .success(try await connection.readFile(ChrootPaths.manifest, limit: Manifest.sizeLimit))
        } catch {
            read = .failure(error)
        }
        return accept(read, from: connection.endpoint, lastSeen: lastSeen, expiryRequired: expiryRequired, now: now)
    }

    /// ``fetch(over:lastSeen:expiryRequired:now:)`` that writes `heartbeat` into its slot in `logs/`, in place,
    /// in the same round trips (the heartbeat a poll with nothing new writes: ``RunReporter/heartbeatDraft(_:)``).
    /// Whether it stays there is for ``RunReporter/heartbeat(_:over:result:)`` to decide once the manifest is read.
    ///
    /// - Returns: the step, and `heartbeat` when it was written and closed (else nil: the heartbeat is then
    ///   written the long way, and its failure reported there).
    func fetch(
        over connection: SFTPConnection, lastSeen: ManifestPolicy.Seen?, expiryRequired: Bool, now: Date,
        writingAhead heartbeat: Heartbeat?, into slot: HeartbeatSlot
    ) async -> (step: Step<Manifest>, written: Heartbeat?) {
        guard let heartbeat else {
            return (await fetch(over: connection, lastSeen: lastSeen, expiryRequired: expiryRequired, now: now), nil)
        }
        log.phase("reading the manifest")
        let done = await connection.readFile(
            ChrootPaths.manifest, limit: Manifest.sizeLimit, whileWriting: heartbeat.encoded(),
            to: ChrootPaths.upload(slot.fileName))
        let step = accept(
            done.read, from: connection.endpoint, lastSeen: lastSeen, expiryRequired: expiryRequired, now: now)
        return (step, done.writeError == nil ? heartbeat : nil)
    }

    /// The manifest read (or the failure to read it), verified and checked against the policy.
    private func accept(
        _ read: Result<[UInt8], SSHError>, from server: SSHEndpoint, lastSeen: ManifestPolicy.Seen?,
        expiryRequired: Bool, now: Date
    )
        -> Step<Manifest>
    {
        let bytes: [UInt8]
        switch read {
        case .success(let read): bytes = read
        case .failure(let error):
            if error.code == .noSuchFile {
                return .done(
                    RunResult(
                        outcome: .unchanged,
                        reason: "nothing is published for \(configuration.host) yet (no manifest on the server)"))
            }
            if error.code == .limitExceeded {
                return .done(
                    RunResult(
                        outcome: .refused, reason: "the manifest is larger than \(Manifest.sizeLimit) bytes: \(error)"))
            }
            return .done(RunResult(outcome: .unreachable, reason: error.description))
        }
        let manifest: Manifest
        do {
            manifest = try Manifest.verify(bytes, with: configuration.fleetPublicKey)
        } catch {
            return .done(
                RunResult(outcome: .refused, reason: "the manifest does not verify: \(error); nothing was applied"))
        }
        if let reason = ManifestPolicy.refusal(of: manifest, for: configuration.host, lastSeen: lastSeen) {
            return .done(
                RunResult(outcome: .refused, reason: reason + "; nothing was applied", generation: manifest.generation))
        }
        if let reason = ManifestPolicy.staleness(
            of: manifest, now: Int64(now.timeIntervalSince1970), expiryRequired: expiryRequired)
        {
            return .done(
                RunResult(
                    outcome: .stale,
                    reason: reason + " (server \(server.host) port \(server.port)); nothing was applied, "
                        + "generation \(manifest.generation) is not taken as seen",
                    generation: manifest.generation))
        }
        log.phase(
            "generation \(manifest.generation) is published (commit \(manifest.sourceCommit), at \(manifest.publishedAt))"
        )
        return .next(manifest)
    }
}
