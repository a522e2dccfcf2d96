import ClientStateStore
import FleetFiles
import FleetProtocol
import Foundation
import SFTPTransport

/// Step 7 of a run, and the poll's sign of life: builds the report, the log and the heartbeat, and uploads them
/// into the chroot's `logs/`. The report and log go under a temporary name then renamed, so the server never
/// reads half of one; what cannot be uploaded now waits in the ``ReportOutbox`` and goes first on the next
/// contact. The heartbeat is written in place into one of two slots in turn (``HeartbeatSlot``): the server may
/// read half of one, and still has the other.
struct RunReporter {
    let configuration: ClientConfiguration
    let endpoint: SSHEndpoint
    let stateDirectory: StateDirectory
    let log: RunLog
    /// What time it is (timestamps, deadlines, durations): the system's, or a test's.
    var clock: WallClock = .system

    private var outbox: ReportOutbox { ReportOutbox(stateDirectory: stateDirectory.path, log: log) }

    /// Writes one file into `logs/` under a temporary name and renames it into place.
    static func upload(name: String, bytes: [UInt8], over connection: SFTPConnection) async throws(SSHError) {
        try await connection.replaceFile(
            ChrootPaths.upload(name), bytes: bytes, through: ChrootPaths.uploadInProgress(name))
    }

    /// Uploads what earlier runs could not, oldest first, removing each once it is in place on the server.
    func flushOutbox(over connection: SFTPConnection) async {
        let outbox = self.outbox
        let names = outbox.waiting()
        guard !names.isEmpty else { return }
        do {
            var uploaded = 0
            for name in names {
                guard let bytes = outbox.contents(of: name) else { continue }
                try await Self.upload(name: name, bytes: bytes, over: connection)
                outbox.remove(name)
                uploaded += 1
            }
            log.phase("uploaded \(uploaded) report file(s) kept from earlier runs")
        } catch {
            log.phase("could not upload earlier reports yet: \(error)")
        }
    }

    /// The report of a run that is about to fetch and apply `manifest`, filled in as the steps go.
    func startReport(for manifest: Manifest, _ attempt: RunAttempt) -> RunReport {
        var report = RunReport(
            host: configuration.host.value, state: .failed, startedAt: UTCTime.iso(attempt.startedAt),
            finishedAt: "")
        report.generation = manifest.generation
        report.previousGeneration = attempt.state.applied?.generation
        report.sourceCommit = manifest.sourceCommit
        return report
    }

    /// Uploads the log and report of a run over the poll's connection.
    func report(_ result: RunResult, _ attempt: inout RunAttempt, over connection: SFTPConnection) async {
        let files = reportFiles(result, &attempt)
        do {
            for file in files { try await Self.upload(name: file.name, bytes: file.bytes, over: connection) }
            log.phase("report uploaded to logs/\(files[1].name)")
        } catch {
            keep(files, because: error)
        }
    }

    /// Uploads the log and report over a new connection: after a build, the poll's may be long gone.
    func reportOverNewConnection(_ result: RunResult, _ attempt: inout RunAttempt) async {
        let files = reportFiles(result, &attempt)
        do {
            try await SFTPConnection.withConnection(to: endpoint) { connection throws(SSHError) in
                for file in files { try await Self.upload(name: file.name, bytes: file.bytes, over: connection) }
            }
            log.phase("report uploaded to logs/\(files[1].name)")
        } catch {
            keep(files, because: error)
        }
    }

    /// Uploads the report (unless the result is `unchanged`) and the heartbeat of a run over a new connection: a
    /// refusal by a server the run passed over, once no other server served a usable manifest either.
    func reportAndHeartbeatOverNewConnection(_ result: RunResult, _ attempt: inout RunAttempt) async {
        do {
            let connection = try await SFTPConnection.connect(to: endpoint)
            if result.outcome != .unchanged { await report(result, &attempt, over: connection) }
            await heartbeat(&attempt, over: connection, result: result)
            await connection.close()
        } catch {
            if result.outcome != .unchanged {
                let files = reportFiles(result, &attempt)
                keep(files, because: error)
            } else {
                log.phase("could not write the heartbeat: \(error)")
            }
        }
    }

    /// Writes the heartbeat into this server's next slot (``heartbeatSlot(_:)``): the cheap sign of life of a
    /// poll with nothing to do. Once it is there whole, the state records that slot as the good one.
    ///
    /// When the heartbeat drafted before the manifest was read (``heartbeatDraft(_:)``) was written whole into the
    /// slot and is still this result's heartbeat, nothing is left to do. Otherwise the right one is written into
    /// the same slot, in place (two round trips).
    func heartbeat(_ attempt: inout RunAttempt, over connection: SFTPConnection, result: RunResult) async {
        let slot = Self.heartbeatSlot(attempt)
        let draftIsRight = attempt.heartbeatDraft.map { makeHeartbeat(attempt, result: result, at: $0.at) == $0 }
        if draftIsRight != true {
            let beat = makeHeartbeat(attempt, result: result, at: UTCTime.iso(clock.now()))
            do {
                try await connection.writeFile(ChrootPaths.upload(slot.fileName), bytes: beat.encoded())
            } catch {
                log.phase("could not write the heartbeat: \(error)")
                return
            }
        }
        attempt.state.heartbeatSlots = (attempt.state.heartbeatSlots ?? [:]).merging(
            [Self.serverName(attempt): slot], uniquingKeysWith: { $1 })
    }

    /// The slot this run writes its heartbeat into on the server it talks to: the one that does not hold the
    /// last heartbeat written whole there, so a failed write spoils nothing that was good. Slot a at first.
    static func heartbeatSlot(_ attempt: RunAttempt) -> HeartbeatSlot {
        attempt.state.heartbeatSlots?[serverName(attempt)]?.other ?? .a
    }

    private static func serverName(_ attempt: RunAttempt) -> String {
        attempt.server ?? ClientConfiguration.primaryName
    }

    /// The heartbeat this poll writes when its result is the last run's again, as it is on every poll while
    /// nothing changes: known before the manifest is read, so it can be written in the same round trips (see
    /// ``ManifestFetch/fetch(over:lastSeen:expiryRequired:now:writingAhead:into:)``). Nil when no run finished
    /// before.
    func heartbeatDraft(_ attempt: RunAttempt) -> Heartbeat? {
        guard let outcome = attempt.state.lastResult, let reason = attempt.state.lastReason else { return nil }
        return makeHeartbeat(attempt, result: RunResult(outcome: outcome, reason: reason), at: UTCTime.iso(clock.now()))
    }

    /// Removes the slot a draft was sent to when the poll writes no heartbeat (it found something to apply, and
    /// reports instead; or it passes this server over): a heartbeat is only ever one a poll with nothing new
    /// writes, or the right one written after it. The other slot keeps the last good heartbeat. One round trip,
    /// on a poll that downloads anyway.
    func discardHeartbeatDraft(_ attempt: inout RunAttempt, over connection: SFTPConnection) async {
        guard let slot = attempt.draftedSlot else { return }
        attempt.draftedSlot = nil
        attempt.heartbeatDraft = nil
        do {
            try await connection.remove(ChrootPaths.upload(slot.fileName))
        } catch {
            log.phase("could not remove the unused heartbeat draft: \(error)")
        }
    }

    private func makeHeartbeat(_ attempt: RunAttempt, result: RunResult, at time: String) -> Heartbeat {
        var beat = Heartbeat(
            host: configuration.host.value, at: time,
            appliedGeneration: attempt.state.applied?.generation,
            seenGeneration: attempt.state.lastSeen?.generation, failedGeneration: attempt.state.failed?.generation,
            lastResult: result.outcome, reason: result.reason,
            rebootNeeded: (try? FileIO.readLink(configuration.reboot.bootedSystem)) == nil
                ? nil : Rebooter(configuration: configuration, log: log, clock: clock).reason() != nil
        )
        beat.pollIntervalSeconds = configuration.pollIntervalSeconds
        beat.failedConnectAttempts = attempt.failedConnectAttempts
        beat.overlays = appliedOverlays(attempt.state.applied?.overlays)
        beat.server = attempt.server
        beat.skippedServers = attempt.skippedServers
        return beat
    }

    /// The overlays the applied system was built with, by name: the recorded ones when their set is the applied
    /// one's. Nil without overlays, or when the recorded set changed since (an add or remove not applied yet,
    /// whose names are all that is known): the state keeps only the applied set's digest.
    private func appliedOverlays(_ appliedSet: String?) -> [RunReport.Overlay]? {
        guard let appliedSet, let overlays = try? OverlayStore(stateDirectory: stateDirectory.path).load(),
            OverlayStore.setDigest(overlays) == appliedSet
        else { return nil }
        return overlays.map { RunReport.Overlay(name: $0.name, digest: $0.digest) }
    }

    private func keep(_ files: [(name: String, bytes: [UInt8])], because error: any Error) {
        log.phase(
            "could not upload the report (\(error)); it is kept in \(stateDirectory.path)/outbox for the next run")
        do { try outbox.enqueue(files) } catch { log.phase("\(error)") }
    }

    /// The log and the report of this run, named by time and generation.
    private func reportFiles(_ result: RunResult, _ attempt: inout RunAttempt) -> [(name: String, bytes: [UInt8])] {
        let finished = clock.now()
        var report =
            attempt.report
            ?? RunReport(
                host: configuration.host.value, state: result.outcome, startedAt: UTCTime.iso(attempt.startedAt),
                finishedAt: "")
        report.state = result.outcome
        report.reason = result.reason
        report.generation = report.generation ?? result.generation
        report.finishedAt = UTCTime.iso(finished)
        report.durations.total = finished.timeIntervalSince(attempt.startedAt)
        report.currentSystem = try? FileIO.readLink(configuration.reboot.currentSystem)
        report.bootedSystem = try? FileIO.readLink(configuration.reboot.bootedSystem)
        if report.bootedSystem != nil {
            let reason = Rebooter(configuration: configuration, log: log, clock: clock).reason()
            report.rebootNeeded = reason != nil
            report.rebootReason = reason
        }
        let stem = UploadName.stem(time: UTCTime.compact(finished), generation: result.generation)
        let logName = UploadName.logName(stem: stem)
        report.log = logName
        report.pollIntervalSeconds = configuration.pollIntervalSeconds
        // This client's, even when the report was started by an older one (a run resumed after an upgrade).
        report.clientVersion = FleetVersion.current.description
        report.connectAttempts = report.connectAttempts ?? attempt.connectAttempts
        report.failedConnectAttempts = report.failedConnectAttempts ?? attempt.failedConnectAttempts
        report.server = attempt.server ?? report.server
        report.skippedServers = attempt.skippedServers ?? report.skippedServers
        attempt.report = report
        return [(logName, log.contents()), (UploadName.reportName(stem: stem), report.encoded())]
    }
}
