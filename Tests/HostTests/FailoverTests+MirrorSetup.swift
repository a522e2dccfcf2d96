import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import ServerStore
import Testing

extension FailoverTests {
    /// A mirror made the documented way: `fleet setup` with the primary's fleet.toml (only its [server] paths
    /// differ, as on another machine), filled by `fleet mirror push` over a real sshd, and then serving a host
    /// whose primary is down. One machine stands in for both, so the users are the same accounts; what setup must
    /// make on the mirror is the same names, the same chroot layout, owners and modes, and its own links and keys.
    @Test func fleetSetupOnAMirrorMakesTheSameUsersAndChrootsAndAfterAPushItServesAHost() async throws {
        let host = "fo-setup"
        let fleet = try await ClientFleet.start(hosts: [host])
        defer { fleet.stop() }
        let mirror = try TestDirectory.makeRootOwned()
        defer { mirror.remove() }
        let mirrorRoot = mirror.path("chroot")
        let mirrorState = mirror.path("state")

        // The mirror's repository: the same fleet.toml but for [server]'s chroot_root and state_dir.
        let mirrorRepository = mirror.path("repo")
        let copied = try await Command.run("/usr/bin/cp", ["-a", fleet.fixture.repository, mirrorRepository])
        #expect(copied.exitCode == 0, "\(copied.standardError)")
        let toml = try String(contentsOfFile: fleet.fixture.repository + "/fleet.toml", encoding: .utf8)
        let mirrorToml = toml.replacingOccurrences(
            of: "chroot_root = \"\(fleet.fixture.chrootRoot)\"", with: "chroot_root = \"\(mirrorRoot)\""
        ).replacingOccurrences(
            of: "state_dir = \"\(fleet.fixture.stateDirectory)\"", with: "state_dir = \"\(mirrorState)\"")
        try #require(mirrorToml.contains(mirrorRoot) && mirrorToml.contains(mirrorState), "\(mirrorToml)")
        _ = unlink(mirrorRepository + "/fleet.toml")
        try FileIO.writeAtomically(Array(mirrorToml.utf8), to: mirrorRepository + "/fleet.toml", mode: 0o644)
        /// `fleet` on the mirror: its own repository, no overrides from the test's environment.
        func fleetOnTheMirror(_ arguments: [String]) async throws -> CommandOutput {
            try await Command.run(
                FleetFixture.executable("fleet"), arguments + ["--repo", mirrorRepository],
                environment: ["FLEET_CHROOT_ROOT": "", "FLEET_STATE_DIR": ""])
        }

        let setup = try await fleetOnTheMirror(["setup", "--json"])
        #expect(setup.exitCode == 0, "\(setup.standardOutput)\(setup.standardError)")
        struct SetupReport: Decodable {
            struct Host: Decodable {
                var host: String
                var user: String
                var status: String
            }
            var hosts: [Host]
        }
        let report = try JSONDecoder().decode(SetupReport.self, from: Data(setup.standardOutput.utf8))
        #expect(report.hosts.map(\.host) == [host])
        #expect(report.hosts.map(\.user) == [fleet.prefix + host], "the same user name as on the primary")
        #expect(report.hosts.allSatisfy { $0.status != "refused" }, "\(setup.standardOutput)")
        #expect(try FileStatus.of(mirrorState + "/state.db") == nil, "setup needs no state.db on a mirror")

        // The same layout, owners and modes; the mirror's own link and authorized key.
        let here = try fleet.layout(host)
        let there = ChrootLayout(root: mirrorRoot, host: try HostName(host))
        for (original, made) in [
            (here.root, there.root), (here.cachePool, there.cachePool), (here.directory, there.directory),
            (here.snapshots, there.snapshots), (here.cache, there.cache), (here.logs, there.logs),
            (here.dev, there.dev),
        ] {
            let a = try #require(try FileStatus.of(original))
            let b = try #require(try FileStatus.of(made), "\(made) was not made")
            let shown =
                "\(String(b.permissions, radix: 8)) \(b.owner):\(b.group), on the primary "
                + "\(String(a.permissions, radix: 8)) \(a.owner):\(a.group)"
            #expect(
                a.kind == b.kind && a.permissions == b.permissions && a.owner == b.owner && a.group == b.group,
                "\(made): \(shown)")
        }
        let user = fleet.prefix + host
        #expect(try FileIO.readLink(mirrorState + "/chroots/" + user) == there.directory)
        #expect(
            try FileIO.read(mirrorState + "/authorized_keys/" + user)
                == FileIO.read(fleet.fixture.stateDirectory + "/authorized_keys/" + user))
        #expect(try FileIO.readLink(fleet.fixture.stateDirectory + "/chroots/" + user) == here.directory)

        // The mirror's sshd: `fleet sshd-config` on the mirror, and root login by key for the push.
        let pushKey = try KeyPair.generate(at: mirror.path("push_key"))
        try mirror.writeFile("root_authorized_keys", text: pushKey.publicKeyLine + "\n", mode: 0o600)
        let rendered = try await fleetOnTheMirror([
            "sshd-config", "--listen-address", "127.0.0.1", "--port", "1", "--host-private-key", "/unused",
        ])
        #expect(rendered.exitCode == 0, "\(rendered.standardError)")
        let body = rendered.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("ListenAddress") && !$0.hasPrefix("HostKey") && !$0.hasPrefix("PidFile") }
            .map { line -> String in
                switch String(line) {
                case "PermitRootLogin no": "PermitRootLogin prohibit-password"
                case "AuthorizedKeysFile none": "AuthorizedKeysFile \(mirror.path("root_authorized_keys"))"
                case "AllowUsers \(fleet.prefix)*": "AllowUsers \(fleet.prefix)* root@127.0.0.1"
                default: String(line)
                }
            }
            .joined(separator: "\n")
        try #require(body.contains("ChrootDirectory \(mirrorState)/chroots/%u"), "\(body)")
        let sshd = try TestSSHD.start(configBody: body)
        defer { sshd.stop() }

        try fleet.fixture.write(
            "fleet.toml",
            toml + """

                [[mirrors]]
                name = "mirror-a"
                address = "127.0.0.1"
                port = \(sshd.port)
                host_key = "\(sshd.hostPublicKey)"
                push_to = "root@127.0.0.1:\(mirrorRoot)"
                ssh_options = ["-p", "\(sshd.port)", "-i", "\(pushKey.privateKeyPath)", "-oIdentitiesOnly=yes"]

                """)
        let pushed = try await fleet.fixture.fleet(["mirror", "push"])
        #expect(pushed.exitCode == 0, "\(pushed.standardOutput)\(pushed.standardError)")
        let manifest = try fleet.manifest(host)
        #expect(try FileIO.readNoFollow(there.manifest) == FileIO.readNoFollow(here.manifest))
        #expect(try FileStatus.of(there.snapshot(manifest.generation))?.group == Accounts.groupID(named: user))

        // client.toml from fleet.toml, now with the mirror; the primary down: the host applies from the mirror.
        try await fleet.writeClientConfiguration(host)
        try #require(
            try String(contentsOfFile: fleet.configPath(host), encoding: .utf8).contains("name = \"mirror-a\""))
        let primaryUploads = try fleet.uploaded(host)
        try Self.takeThePrimaryDown(fleet, host)
        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(output.standardError.contains("served by mirror mirror-a"), "\(output.standardError)")
        #expect(try fleet.state(host).applied?.generation == manifest.generation)
        let uploaded = try FileIO.listDirectory(there.logs)
        #expect(uploaded.contains { $0.hasPrefix("report-") }, "\(uploaded)")
        #expect(try fleet.uploaded(host) == primaryUploads)
        #expect(try FileStatus.of(there.logs)?.owner == Accounts.user(named: user)?.uid)
    }
}
