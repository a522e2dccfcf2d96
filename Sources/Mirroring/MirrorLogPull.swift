import CommandRunner
import FleetFiles
import FleetProtocol
public import FleetReview
public import Inventory

/// `fleet mirror pull-logs`: brings each mirror's `<host>/logs/` back into `<state_dir>/mirrors/<name>/pulled/`
/// with rsync over SSH, for ``FleetReview/Review`` to ingest with the same rules as the hosts' own uploads.
///
/// The copy is made as untrusted as the original: only `<host>/logs/*` of hosts in fleet.toml, symbolic links
/// kept as links (so that the ingest refuses them, with the warning an upload here would get), no devices or
/// special files, no owners (everything is root's, in a root 0700 directory), files over
/// ``largestFileBytes`` not copied at all (each named in a warning with its size). Modification times are kept:
/// they are when the mirror's sshd received each file, which the ingest takes as the time it was received. Files
/// gone from the mirror are deleted here.
public struct MirrorLogPull: Sendable {
    /// No report or heartbeat is near this; of a log the ingest keeps 1 MiB (its first and last bytes).
    public static let largestFileBytes = 16 << 20

    let configuration: FleetConfiguration

    public init(configuration: FleetConfiguration) { self.configuration = configuration }

    /// Where a mirror's logs are pulled to, laid out as a chroot root (`<host>/logs/`).
    public static func pulledRoot(stateDirectory: String, mirror: String) -> String {
        stateDirectory + "/mirrors/" + mirror + "/pulled"
    }

    /// Pulls each mirror in turn; returns the results and the pulled copies of the mirrors that succeeded.
    public func pull(
        _ mirrors: [MirrorConfiguration], progress: (MirrorResult) -> Void = { _ in }
    ) async -> (results: [MirrorResult], logs: [MirrorLogs]) {
        var results: [MirrorResult] = []
        var logs: [MirrorLogs] = []
        for mirror in mirrors {
            let clock = ContinuousClock.now
            var failure: String?
            var warnings: [String] = []
            do throws(MirrorError) {
                let pulled = try await pull(mirror)
                logs.append(pulled.logs)
                warnings = pulled.warnings
            } catch {
                failure = error.description
            }
            let elapsed = ContinuousClock.now - clock
            let result = MirrorResult(
                mirror: mirror.name, action: "pull-logs", succeeded: failure == nil, error: failure,
                passes: failure == nil ? ["logs"] : [],
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                warnings: warnings)
            progress(result)
            results.append(result)
        }
        return (results, logs)
    }

    /// The filter: each host's `logs/` and the entries directly in it, nothing else.
    func rules() -> [String] {
        configuration.hosts.flatMap { host in
            ["+ /\(host.name.value)/", "+ /\(host.name.value)/logs", "+ /\(host.name.value)/logs/*"]
        } + ["- *"]
    }

    func arguments(transport: MirrorTransport, filter: String, destination: String) -> [String] {
        [
            "--recursive", "--links", "--times", "--no-perms", "--no-owner", "--no-group", "--no-devices",
            "--no-specials", "--munge-links", "--delete", "--max-size=\(Self.largestFileBytes)",
            // Says "<path> is over max-size" for each file left out, on standard output.
            "--info=skip1", "--filter=merge \(filter)",
            transport.mirror.pushTo.remote(transport.mirror.pushTo.path + "/"), destination + "/",
        ]
    }

    func pull(_ mirror: MirrorConfiguration) async throws(MirrorError) -> (logs: MirrorLogs, warnings: [String]) {
        let transport = MirrorTransport(mirror: mirror, stateDirectory: configuration.server.stateDirectory)
        try transport.prepare()
        let destination = Self.pulledRoot(stateDirectory: configuration.server.stateDirectory, mirror: mirror.name)
        do {
            try FileIO.ensureDirectory(destination, mode: 0o700)
        } catch {
            throw MirrorError("mirror \(mirror.name): cannot prepare \(destination): \(error)")
        }
        let filter = try transport.writeFilter("pull-logs.filter", rules: rules())
        let output = try await transport.rsync(
            arguments(transport: transport, filter: filter, destination: destination), pass: "pull-logs")
        let logs = MirrorLogs(mirror: mirror.name, root: destination)
        let skipped = Self.overMaxSize(output.standardOutput)
        guard !skipped.isEmpty else { return (logs, []) }
        return (logs, await oversizeWarnings(skipped, transport: transport, filter: filter))
    }

    /// Deletes on the mirror the reports and logs the ingest of its pulled copy found beyond `[server] logs_keep`
    /// (``FleetReview/IngestSummary/mirrorPrunable``: ingested, oldest first, as the server prunes its own), so
    /// that a mirror's `logs/` are bounded like this server's; the next pull drops them from the copy.
    ///
    /// rsync deletes each listed file on the mirror only once it is the same as the pulled copy (size and time,
    /// which hosts cannot set) or has been copied again: nothing that was not pulled is deleted, nor anything not
    /// listed. A listed file already gone from the mirror (the host removed it) is no error, and is not counted.
    /// - Returns: how many files rsync says it deleted there, and a warning when it failed or deleted fewer than
    ///   listed (those stay; a later pull with new files tries again).
    public func prune(_ mirror: MirrorConfiguration, paths: [String]) async -> (deleted: Int, warning: String?) {
        guard !paths.isEmpty else { return (0, nil) }
        let transport = MirrorTransport(mirror: mirror, stateDirectory: configuration.server.stateDirectory)
        let destination = Self.pulledRoot(stateDirectory: configuration.server.stateDirectory, mirror: mirror.name)
        let output: CommandOutput
        do throws(MirrorError) {
            try transport.prepare()
            let list = try transport.writeFilter("prune.list", rules: paths)
            output = try await transport.rsync(
                [
                    "--times", "--no-perms", "--no-owner", "--no-group", "--no-devices", "--no-specials", "--links",
                    "--munge-links", "--max-size=\(Self.largestFileBytes)", "--remove-source-files",
                    // Says "sender removed <path>" for each file deleted on the mirror, on standard output.
                    "--info=remove1", "--files-from=\(list)",
                    transport.mirror.pushTo.remote(transport.mirror.pushTo.path + "/"), destination + "/",
                ], pass: "prune", alsoSuccessful: [23])
        } catch {
            return (0, "\(error.description) (the \(paths.count) old reports and logs stay on the mirror)")
        }
        let deleted = output.standardOutput.split(separator: "\n").filter { $0.hasPrefix("sender removed ") }.count
        let gone = output.standardError.split(separator: "\n").filter {
            $0.contains("link_stat") && $0.contains("No such file or directory")
        }.count
        guard deleted + gone < paths.count else { return (deleted, nil) }
        return (
            deleted,
            "mirror \(mirror.name): \(paths.count - deleted) of \(paths.count) old reports and logs to delete there "
                + "(ingested, beyond [server] logs_keep) were not deleted: \(MirrorTransport.lastLines(output.standardError))"
        )
    }

    static let overMaxSizeSuffix = " is over max-size"

    /// The paths rsync said it left out for their size (`<host>/logs/<name>`, as rsync prints them: characters
    /// other than printable ones escaped as `\#ooo`).
    static func overMaxSize(_ output: String) -> [String] {
        output.split(separator: "\n").compactMap { line in
            line.hasSuffix(overMaxSizeSuffix) ? String(line.dropLast(overMaxSizeSuffix.count)) : nil
        }
    }

    /// A warning per file left on the mirror for its size, naming the mirror, the host, the file, its size and the
    /// limit. The sizes come from a listing of the same files (one more connection, only when files were left).
    func oversizeWarnings(_ paths: [String], transport: MirrorTransport, filter: String) async -> [String] {
        let mirror = transport.mirror
        var sizes: [String: Int64] = [:]
        var listingFailure: String?
        do throws(MirrorError) {
            let listing = try await transport.rsync(
                [
                    "--recursive", "--list-only", "--no-human-readable", "--filter=merge \(filter)",
                    mirror.pushTo.remote(mirror.pushTo.path + "/"),
                ], pass: "pull-logs listing")
            sizes = Self.listedSizes(listing.standardOutput)
        } catch {
            listingFailure = error.description
        }
        let limit = "\(Self.largestFileBytes) bytes (16 MiB)"
        return paths.map { path in
            let host = configuration.hosts.map(\.name.value).first { path.hasPrefix($0 + "/logs/") }
            let name = host.map { String(path.dropFirst($0.count + "/logs/".count)) } ?? path
            let size = sizes[path].map { "\($0) bytes" } ?? "of unknown size (\(listingFailure ?? "not listed"))"
            return "mirror \(mirror.name): \(host.map { "host \($0)'s" } ?? "a") file logs/\(quoted(name)) is \(size), "
                + "over the \(limit) pull-logs copies: it was not pulled or ingested; look at it on the mirror "
                + "(\(mirror.pushTo.path)/\(host ?? "?")/logs/) and remove it there"
        }
    }

    /// Path → size from `rsync --list-only --no-human-readable`: `<mode> <size> <date> <time> <path>`.
    static func listedSizes(_ output: String) -> [String: Int64] {
        var sizes: [String: Int64] = [:]
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: true)
            guard fields.count == 5, fields[0].hasPrefix("-"), let size = Int64(fields[1]) else { continue }
            sizes[String(fields[4])] = size
        }
        return sizes
    }
}
