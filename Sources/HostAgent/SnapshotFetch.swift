import ArchiveKit
import FleetFiles
import FleetProtocol
import Foundation
import SFTPTransport

/// Step 4 of a run: downloads the snapshot a verified manifest names, checks its size and SHA-256, extracts it
/// safely (no absolute paths, no `..`, no links, no devices, bounded sizes) into `generations/<gen>` (or a
/// directory `check --download` created), and mirrors the binary cache of its closure when the manifest ships
/// one.
struct SnapshotFetch {
    let log: RunLog
    /// What time it is (timestamps, deadlines, durations): the system's, or a test's.
    var clock: WallClock = .system

    /// Snapshots larger than this are refused before downloading.
    static let extractionLimits = ExtractionLimits(maxBytes: 8 << 30, maxEntries: 500_000, maxFileBytes: 2 << 30)

    /// Where an extracted snapshot goes.
    enum Placement {
        /// `generations/<gen>` of the state directory, replaced when an interrupted run left one there; the
        /// download and the extraction in progress sit beside it.
        case generation(String)
        /// A directory this process has just created (`check --download`): the snapshot's top entries are
        /// moved into it, and the download and extraction in progress are inside it, so nothing outside it is
        /// touched and nothing in it is replaced.
        case createdDirectory(String)

        var target: String {
            switch self {
            case .generation(let path), .createdDirectory(let path): path
            }
        }

        /// Where the download and the extraction in progress go.
        var scratch: String {
            switch self {
            case .generation(let path): FileIO.split(path).directory
            case .createdDirectory(let path): path
            }
        }
    }

    /// Downloads the snapshot, checks its size and hash, and extracts it.
    ///
    /// - Returns: the directory it was extracted into, or the run's result: refused (the snapshot does not
    ///   match its manifest or is unsafe), failed, unreachable, or a local failure.
    func fetch(
        _ manifest: Manifest, over connection: SFTPConnection, into placement: Placement, report: inout RunReport
    ) async -> Step<String> {
        let generation = manifest.generation
        let refuse = { (reason: String) in
            Step<String>.done(
                RunResult(outcome: .refused, reason: reason + "; nothing was applied", generation: generation))
        }
        let started = clock.now()
        let download = "\(placement.scratch)/.download-\(generation).tar.zst"
        _ = try? FileIO.removeFile(download)
        let size = manifest.snapshot.size
        log.phase("downloading \(manifest.snapshot.path) (\(size) bytes)")
        let log = self.log
        do {
            try await connection.download(
                manifest.snapshot.path, to: download, expectedSize: size, limit: ManifestPolicy.snapshotLimit,
                progress: { received in
                    log.progress("downloading: \(size > 0 ? received * 100 / size : 100)% of \(size) bytes")
                })
        } catch {
            _ = try? FileIO.removeFile(download)
            switch error.code {
            case .limitExceeded:
                return refuse("the snapshot on the server does not match the manifest: \(error)")
            case .noSuchFile, .permissionDenied:
                return .done(
                    RunResult(
                        outcome: .failed, reason: "the manifest names a snapshot the server does not serve: \(error)",
                        generation: generation))
            case .localIO:
                return .done(.localFailure("the snapshot cannot be stored here: \(error)", generation: generation))
            default:
                return .done(
                    RunResult(outcome: .unreachable, reason: "the download broke off: \(error)", generation: generation)
                )
            }
        }
        defer { _ = try? FileIO.removeFile(download) }
        let digest: String
        do {
            digest = try SHA256Hasher.hex(ofFile: download)
        } catch {
            return .done(.localFailure("cannot read the downloaded snapshot: \(error)", generation: generation))
        }
        guard digest == manifest.snapshot.sha256 else {
            return refuse(
                "the snapshot's sha256 is \(digest), but the signed manifest says \(manifest.snapshot.sha256)")
        }
        report.durations.download = clock.now().timeIntervalSince(started)
        return extract(download, generation: generation, into: placement)
    }

    /// Extracts a checked download beside its target, then moves it into place.
    private func extract(_ download: String, generation: UInt64, into placement: Placement) -> Step<String> {
        let refuse = { (reason: String) in
            Step<String>.done(
                RunResult(outcome: .refused, reason: reason + "; nothing was applied", generation: generation))
        }
        let target = placement.target
        let incoming = "\(placement.scratch)/.incoming-\(generation)"
        do {
            try FileIO.removeTree(incoming)
            let summary = try SafeExtractor().extract(
                archivePath: download, into: incoming, limits: Self.extractionLimits,
                // Not made durable: after a crash the generation is not recorded as applied, so the next run
                // removes and extracts it again; once applied, what counts is in the Nix store.
                durable: false)
            let top = try FileIO.listDirectory(incoming)
            guard top.contains("tree"), Set(top).isSubset(of: ["tree", "secrets"]) else {
                try? FileIO.removeTree(incoming)
                return refuse(
                    "the snapshot holds \(top.sorted().map(quoted).joined(separator: ", ")) at its top, not tree/ (and secrets/)"
                )
            }
            switch placement {
            case .generation:
                try FileIO.removeTree(target)
                try FileIO.rename(incoming, to: target)
            case .createdDirectory:
                for name in top { try FileIO.rename("\(incoming)/\(name)", to: "\(target)/\(name)") }
                try FileIO.removeEmptyDirectory(incoming)
            }
            log.phase("extracted \(summary.files) files (\(summary.bytes) bytes) into \(target)")
        } catch let error as ArchiveError {
            try? FileIO.removeTree(incoming)
            if error.code == .system, let number = error.systemError, RunResult.isLocalFailure(errno: number) {
                return .done(.localFailure("cannot extract the snapshot: \(error)", generation: generation))
            }
            return refuse("the snapshot was refused while extracting: \(error)")
        } catch {
            try? FileIO.removeTree(incoming)
            return .done(.localFailure("cannot extract the snapshot: \(error)", generation: generation))
        }
        return .next(target)
    }

    /// Fetches what this host's Nix store lacks of the manifest's toplevel's closure from the chroot's `cache/`
    /// into the local cache, when the manifest ships one; records what it cost in the report (`cache`, and in
    /// `durations.download` with the snapshot). With `substitution`, the closure goes into the Nix store batch by
    /// batch as it arrives; the wait for the last batch after the last byte counts as `durations.build`.
    ///
    /// - Returns: nil when there is nothing to fetch or it is fetched; else the run's result (failed, or a local
    ///   failure; either way the generation is not recorded as failed: the next run tries again).
    func mirrorCache(
        of manifest: Manifest, into directory: StateDirectory, over connection: SFTPConnection,
        substitution: SubstitutionWhileDownloading? = nil, report: inout RunReport?
    ) async -> RunResult? {
        guard let toplevel = manifest.toplevel, manifest.hasCache else { return nil }
        let started = clock.now()
        do {
            var fetch = CacheFetch(localDirectory: directory.cache, log: log, clock: clock)
            fetch.substitution = substitution
            let transfer = try await fetch.fetch(closureOf: toplevel, over: connection)
            report?.cache = transfer
            let snapshotSeconds = report?.durations.download ?? 0
            report?.durations.download = snapshotSeconds + transfer.seconds
            if substitution != nil {
                report?.durations.build = max(0, clock.now().timeIntervalSince(started) - transfer.seconds)
            }
            return nil
        } catch {
            let reason = "generation \(manifest.generation): \(error)"
            if error.isLocal { return .localFailure(reason, generation: manifest.generation) }
            return RunResult(outcome: .failed, reason: reason, generation: manifest.generation)
        }
    }
}
