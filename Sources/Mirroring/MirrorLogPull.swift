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
/// ``largestFileBytes`` not copied at all. Modification times are kept: they are when the mirror's sshd received
/// each file, which the ingest takes as the time it was received. Files gone from the mirror are deleted here.
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
            do throws(MirrorError) {
                logs.append(try await pull(mirror))
            } catch {
                failure = error.description
            }
            let elapsed = ContinuousClock.now - clock
            let result = MirrorResult(
                mirror: mirror.name, action: "pull-logs", succeeded: failure == nil, error: failure,
                passes: failure == nil ? ["logs"] : [],
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
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
            "--filter=merge \(filter)",
            transport.mirror.pushTo.remote(transport.mirror.pushTo.path + "/"), destination + "/",
        ]
    }

    func pull(_ mirror: MirrorConfiguration) async throws(MirrorError) -> MirrorLogs {
        let transport = MirrorTransport(mirror: mirror, stateDirectory: configuration.server.stateDirectory)
        try transport.prepare()
        let destination = Self.pulledRoot(stateDirectory: configuration.server.stateDirectory, mirror: mirror.name)
        do {
            try FileIO.ensureDirectory(destination, mode: 0o700)
        } catch {
            throw MirrorError("mirror \(mirror.name): cannot prepare \(destination): \(error)")
        }
        let filter = try transport.writeFilter("pull-logs.filter", rules: rules())
        try await transport.rsync(
            arguments(transport: transport, filter: filter, destination: destination), pass: "pull-logs")
        return MirrorLogs(mirror: mirror.name, root: destination)
    }
}
