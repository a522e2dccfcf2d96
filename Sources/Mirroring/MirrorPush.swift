import FleetFiles
import FleetProtocol
public import Inventory
import ServerStore

/// `fleet mirror push`: copies the chroot root to each mirror with rsync over SSH, in an order that never lets a
/// mirror serve a manifest whose snapshot or cache it lacks:
///
/// 1. `groups`: the mirror's `/etc/group` is fetched and every host group that owns snapshots here must exist
///    there. rsync gives files to the group of the same *name* on the mirror (no `--numeric-ids`: ids differ
///    between machines); without that name it would fall back to the number, which may be someone else's
///    group there, so the push stops instead and says to run `fleet setup` on the mirror.
/// 2. `data`: snapshots, `cache/` and the pool `.cache-pool/` of every host in fleet.toml, in one rsync with
///    `-H`, so the cache views stay hard links into one pool; owners, groups (by name) and modes as here.
///    Manifests, `logs/`, `dev/` and temporary files are left out; nothing is deleted yet.
/// 3. `manifests`: only `<host>/manifest`, each written by rsync under a temporary name and renamed.
/// 4. `cleanup`: deletes on the mirror what is gone here (superseded snapshots, cache files), now that no
///    manifest there names them. `logs/` and `dev/` of the mirror are never touched by any pass.
///
/// Callers hold the publish lock, so that no publish changes the chroots between the passes.
public struct MirrorPush: Sendable {
    public enum Pass: String, Sendable, CaseIterable {
        case groups, data, manifests, cleanup
    }

    /// Knobs for tests: where the mirror's group file is read, and a pass after which to stop as a failed push
    /// would (to show what a mirror holds then).
    public struct Options: Sendable {
        public var groupFile = "/etc/group"
        public var stopAfter: Pass?

        public init(groupFile: String = "/etc/group", stopAfter: Pass? = nil) {
            self.groupFile = groupFile
            self.stopAfter = stopAfter
        }
    }

    let configuration: FleetConfiguration
    let options: Options

    public init(configuration: FleetConfiguration, options: Options = Options()) {
        self.configuration = configuration
        self.options = options
    }

    /// Pushes to every mirror in turn (one failing does not stop the others), calling `progress` after each.
    public func push(
        _ mirrors: [MirrorConfiguration], progress: (MirrorResult) -> Void = { _ in }
    ) async -> [MirrorResult] {
        var results: [MirrorResult] = []
        for mirror in mirrors {
            let clock = ContinuousClock.now
            var passes: [String] = []
            var failure: String?
            do throws(MirrorError) {
                try await push(mirror) { passes.append($0.rawValue) }
            } catch {
                failure = error.description
            }
            let elapsed = ContinuousClock.now - clock
            let result = MirrorResult(
                mirror: mirror.name, action: "push", succeeded: failure == nil, error: failure, passes: passes,
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            progress(result)
            results.append(result)
        }
        return results
    }

    /// The filter rules of the data and cleanup passes: the pool and each host's directory, without manifests,
    /// `logs/`, `dev/` or temporary files; nothing else of the chroot root.
    func dataRules() -> [String] {
        [
            "- \(FileIO.temporaryPrefix)*", "- /*/logs/", "- /*/dev/", "- /*/manifest",
            "+ /\(ChrootLayout.cachePoolName)/",
        ]
            + configuration.hosts.map { "+ /\($0.name.value)/" } + ["- /*"]
    }

    /// The manifests pass: each host's directory (its attributes) and its `manifest`, nothing else.
    func manifestRules() -> [String] {
        ["- \(FileIO.temporaryPrefix)*"] + configuration.hosts.map { "+ /\($0.name.value)/" } + [
            "+ /*/manifest", "- *",
        ]
    }

    /// The rsync arguments of each pass after the common ones, in order (tests read them).
    func arguments(_ pass: Pass, transport: MirrorTransport, dataFilter: String, manifestFilter: String) -> [String] {
        let source = configuration.server.chrootRoot + "/"
        let destination = transport.mirror.pushTo.remote(transport.mirror.pushTo.path + "/")
        // Owner, group (by name) and mode as here; symlinks as links (the publisher writes none); no devices.
        let attributes = ["--recursive", "--links", "--perms", "--times", "--owner", "--group"]
        switch pass {
        case .groups:
            return [transport.mirror.pushTo.remote(options.groupFile), transport.workDirectory + "/mirror-group"]
        case .data:
            return attributes + ["--hard-links", "--filter=merge \(dataFilter)", source, destination]
        case .manifests:
            return attributes + ["--filter=merge \(manifestFilter)", source, destination]
        case .cleanup:
            return attributes + [
                "--hard-links", "--delete", "--existing", "--ignore-existing", "--filter=merge \(dataFilter)", source,
                destination,
            ]
        }
    }

    func push(_ mirror: MirrorConfiguration, completed: (Pass) -> Void) async throws(MirrorError) {
        let transport = MirrorTransport(mirror: mirror, stateDirectory: configuration.server.stateDirectory)
        try transport.prepare()
        let dataFilter = try transport.writeFilter("push-data.filter", rules: dataRules())
        let manifestFilter = try transport.writeFilter("push-manifests.filter", rules: manifestRules())
        for pass in Pass.allCases {
            try await transport.rsync(
                arguments(pass, transport: transport, dataFilter: dataFilter, manifestFilter: manifestFilter),
                pass: pass.rawValue)
            if pass == .groups { try checkGroups(transport) }
            completed(pass)
            if pass == options.stopAfter {
                throw MirrorError("mirror \(mirror.name): stopped after the \(pass.rawValue) pass, as asked")
            }
        }
    }

    /// Every host group that exists here (and so owns snapshots here) must exist on the mirror by name.
    func checkGroups(_ transport: MirrorTransport) throws(MirrorError) {
        let path = transport.workDirectory + "/mirror-group"
        let text: String
        do {
            text = String(decoding: try FileIO.readNoFollow(path, limit: 64 << 20), as: UTF8.self)
        } catch {
            throw MirrorError(
                "mirror \(transport.mirror.name): cannot read its group file as fetched (\(path)): \(error)")
        }
        let names = Set(text.split(separator: "\n").compactMap { $0.split(separator: ":").first.map(String.init) })
        let needed = configuration.hosts.map(\.unixUser).filter { Accounts.groupID(named: $0) != nil }
        let missing = needed.filter { !names.contains($0) }
        guard missing.isEmpty else {
            let shown = missing.prefix(5).joined(separator: ", ") + (missing.count > 5 ? ", …" : "")
            throw MirrorError(
                "mirror \(transport.mirror.name) lacks the Unix groups of \(missing.count) host(s) (\(shown)), which own "
                    + "their snapshots: run `fleet setup --chroot-root \(transport.mirror.pushTo.path)` on the mirror "
                    + "with this fleet.toml first (it makes the same users), then push again; nothing was pushed")
        }
    }
}
