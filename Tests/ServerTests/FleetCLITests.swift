import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Inventory
import Publishing
import ServerStore
import Testing

/// The `fleet` command line as a new sysadmin meets it: `init`, `publish` of hosts that cannot log in yet,
/// `--dry-run`, `diff` of hostile file names, and flags that say what they take.
@Suite("fleet command line")
struct FleetCLITests {
    static func fleet(_ arguments: [String], environment: [String: String] = [:]) async throws -> CommandOutput {
        // Empty variables count as unset, whatever the environment running the tests says.
        try await Command.run(
            FleetFixture.executable("fleet"), arguments,
            environment: ["FLEET_STATE_DIR": "", "FLEET_CHROOT_ROOT": ""].merging(environment) { $1 })
    }

    // MARK: fleet init

    @Test func initWritesTheStateDirectoryItWasGivenIntoFleetTOML() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let state = directory.path("state")
        let chroot = directory.path("chroot")
        var output = try await Self.fleet([
            "init", directory.path("repo"), "--state-dir", state, "--chroot-root", chroot,
        ])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(try FileStatus.of(state + "/signing.key")?.permissions == 0o600)
        let configuration = try FleetConfiguration.load(repository: directory.path("repo"))
        #expect(configuration.server.stateDirectory == state)
        #expect(configuration.server.chrootRoot == chroot)

        // The next command, without the flag, finds the key: `fleet client-config` reads signing.pub from it.
        output = try await Self.fleet(["hosts", "--repo", directory.path("repo")])
        #expect(output.exitCode == 0, "\(output.standardError)")
        output = try await Self.fleet(["publish", "--repo", directory.path("repo"), "--dry-run"])
        #expect(!output.standardError.contains("no signing key"), "\(output.standardError)")
    }

    @Test func initInAnExistingRepositoryWritesNothingIntoItAndSaysWhatItKept() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        try FileIO.removeTree(fixture.repository + "/fleet.toml")
        let before = try Self.listing(fixture.repository)
        // hosts/ holds a host: an existing repository even without fleet.toml.
        var output = try await Self.fleet(["init", fixture.repository, "--state-dir", fixture.stateDirectory])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("existing fleet repository"), "\(output.standardOutput)")
        #expect(output.standardOutput.contains("kept    hosts"), "\(output.standardOutput)")
        #expect(try Self.listing(fixture.repository) == before, "nothing created or replaced")
        #expect(try FileStatus.of(fixture.repository + "/hosts/example") == nil)

        // With a fleet.toml (and `init .` from inside the repository): the same, and fleet.toml untouched.
        try fixture.write("fleet.toml", "[server]\nstate_dir = \"\(fixture.stateDirectory)\"\n\n[hosts.a]\n")
        let listed = try Self.listing(fixture.repository)
        output = try await Command.run(
            "/bin/sh",
            ["-c", "cd \"$1\" && exec \"$2\" init .", "sh", fixture.repository, FleetFixture.executable("fleet")],
            environment: ["FLEET_STATE_DIR": "", "FLEET_CHROOT_ROOT": ""])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("kept    fleet.toml"), "\(output.standardOutput)")
        #expect(output.standardOutput.contains("kept    signing key \(fixture.stateDirectory)/signing.key"))
        #expect(try Self.listing(fixture.repository) == listed)

        // A --state-dir that disagrees with fleet.toml is said, with the fix.
        output = try await Self.fleet(["init", fixture.repository, "--state-dir", fixture.directory.path("other")])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardError.contains("set state_dir = \"\(fixture.directory.path("other"))\""))
        #expect(try Self.listing(fixture.repository) == listed)
    }

    /// Every path under `root` with its kind, size, inode and mtime.
    static func listing(_ root: String) throws -> [String] {
        var lines: [String] = []
        func walk(_ path: String) throws {
            guard let status = try FileStatus.of(path) else { return }
            lines.append(
                "\(path) \(status.kind) \(status.size) \(status.inode) \(status.modificationSeconds).\(status.modificationNanoseconds)"
            )
            if status.kind == .directory {
                for name in try FileIO.listDirectory(path).sorted() { try walk(path + "/" + name) }
            }
        }
        try walk(root)
        return lines
    }

    // MARK: fleet diff

    @Test func diffEscapesFileNamesAndContent() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let hostile = "x\n  added    tree/forged.nix\u{1b}]0;owned\u{07}\u{1b}[2J.nix"
        try fixture.write("hosts/a/" + hostile, "{ }\n# \u{1b}[31mred\n")
        let output = try await fixture.fleet(["diff", "a"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let text = output.standardOutput
        #expect(!text.contains("\u{1b}") && !text.contains("\u{07}"), "\(text)")
        #expect(!text.contains("\n  added    tree/forged.nix"), "a name cannot forge a line: \(text)")
        #expect(
            text.contains("added    tree/x⏎  added    tree/forged.nix\\u{1b}]0;owned\\u{7}\\u{1b}[2J.nix"), "\(text)")
        #expect(text.contains("+# \\u{1b}[31mred"), "content is escaped too: \(text)")
    }

    @Test func diffOfAHostThatWouldBeRefusedIsARuntimeFailureNotAUsageError() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        try fixture.link("hosts/a/shadow", to: "/etc/shadow")
        let output = try await fixture.fleet(["diff", "a"])
        // It used to exit 64 with a usage line, as if `fleet diff a` were typed wrong.
        #expect(output.exitCode == 1, "\(output.standardError)")
        #expect(output.standardError.contains("a would be refused: link hosts/a/shadow -> /etc/shadow"))
        #expect(!output.standardError.contains("Usage:"), "\(output.standardError)")
    }
}

extension FleetCLITests {
    // MARK: hosts without a key

    @Test func aHostWithoutAKeyIsRefusedByPublishAndLeftOutOfSSHDConfig() async throws {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        let toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        try fixture.write(
            "fleet.toml",
            toml.replacingOccurrences(of: "key = \"\(KeyPair.publicLine(forHost: "b"))\"\n", with: ""))
        var output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 1, "refused, as any host that cannot be published")
        #expect(output.standardOutput.contains("host b has no SSH key in"), "\(output.standardOutput)")
        #expect(output.standardOutput.contains("key_file = \"keys/b.pub\""), "\(output.standardOutput)")
        #expect(try fixture.verifiedManifest("a").generation == 1, "the other hosts still publish")
        #expect(try FileStatus.of(try fixture.layout("b").manifest) == nil)
        output = try await fixture.fleet(["publish", "--dry-run", "--json"])
        #expect(output.standardOutput.contains("\"status\" : \"refused\""), "\(output.standardOutput)")

        output = try await fixture.fleet([
            "sshd-config", "--listen-address", "127.0.0.1", "--port", "2222", "--host-private-key", "/k",
        ])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("Match User fleet-a\n"))
        #expect(output.standardOutput.contains("AllowUsers fleet-*\n"), "\(output.standardOutput)")
        #expect(output.standardOutput.contains("\nAuthorizedKeysFile none\n"), "only the Match block has key files")
        #expect(!output.standardOutput.contains("fleet-b"), "\(output.standardOutput)")
        #expect(output.standardError.contains("note: b left out: host b has no SSH key"), "\(output.standardError)")
    }
}

extension FleetCLITests {
    // MARK: key flags say which half they take

    @Test func keyFlagsTakeTheHalfTheyNameAndRefuseTheOther() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        let key = try KeyPair.generate(at: fixture.directory.path("host_key"), comment: "root@server")
        try fixture.directory.writeFile("public-named-private", text: key.publicKeyLine + "\n")

        // sshd-config: private keys only.
        var output = try await fixture.fleet(["sshd-config", "--host-private-key", key.privateKeyPath])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("HostKey \(key.privateKeyPath)\n"))
        for wrong in [key.privateKeyPath + ".pub", fixture.directory.path("public-named-private")] {
            output = try await fixture.fleet(["sshd-config", "--host-private-key", wrong])
            #expect(output.exitCode == 1, "a runtime refusal, not a usage error: \(output.standardError)")
            #expect(output.standardError.contains("--host-private-key \(wrong)"), "\(output.standardError)")
            #expect(output.standardError.contains("takes the private key"), "\(output.standardError)")
            #expect(output.standardOutput.isEmpty)
        }
        output = try await fixture.fleet(["sshd-config", "--host-key", key.privateKeyPath + ".pub"])
        #expect(output.exitCode == 1, "the old spelling is checked the same way")
        for (flag, value) in [
            ("--listen-address", "0.0.0.0\nPermitRootLogin yes"), ("--host-private-key", "/k\nPermitRootLogin yes"),
            ("--pid-file", "/run/x.pid\nPermitRootLogin yes"),
        ] {
            output = try await fixture.fleet(["sshd-config", flag, value])
            #expect(output.exitCode == 64 && !output.standardOutput.contains("PermitRootLogin yes"), "\(flag)")
        }

        // One style: --listen-address and --port, as client-config's --server-address and --port.
        output = try await fixture.fleet(["sshd-config", "--listen-address", "::1", "--port", "2222"])
        #expect(output.standardOutput.contains("ListenAddress [::1]:2222\n"), "\(output.standardOutput)")
        output = try await fixture.fleet(["sshd-config", "--listen", "127.0.0.1:2223"])
        #expect(output.standardOutput.contains("ListenAddress 127.0.0.1:2223\n"), "the old spelling still works")

        // client-config: public keys only.
        output = try await fixture.fleet(["client-config", "a", "--host-public-key", key.privateKeyPath])
        #expect(output.exitCode == 1, "\(output.standardError)")
        #expect(output.standardError.contains("--host-public-key \(key.privateKeyPath) is a private key"))
        #expect(!output.standardOutput.contains("PRIVATE"))
        for flag in ["--host-public-key", "--host-key-file"] {
            output = try await fixture.fleet([
                "client-config", "a", "--server-address", "fleet.example.org", "--port", "2222", flag,
                key.privateKeyPath + ".pub",
            ])
            #expect(output.exitCode == 0, "\(flag): \(output.standardError)")
            let client = try ClientConfiguration.parse(output.standardOutput, file: "client.toml")
            #expect(client.server.hostKey == (try SSHPublicKey(key.publicKeyLine)))
            #expect(client.server.address == "fleet.example.org" && client.server.port == 2222)
        }
        // An address the host's client.toml would refuse at load is refused here, by its flag.
        for hostile in ["fleet.example.org\nidentity_file = \"/x\"", "-oProxyCommand=x", "[::1]", "a b"] {
            output = try await fixture.fleet([
                "client-config", "a", "--server-address", hostile, "--host-public-key", key.privateKeyPath + ".pub",
            ])
            #expect(output.exitCode == 64 && output.standardOutput.isEmpty, "\(hostile)")
            #expect(output.standardError.contains("--server-address"), "\(output.standardError)")
        }
    }
}

extension FleetCLITests {
    // MARK: fleet-client verify-manifest

    static func verifyManifest(_ arguments: [String]) async throws -> CommandOutput {
        try await Command.run(FleetFixture.executable("fleet-client"), ["verify-manifest"] + arguments)
    }

    @Test func verifyManifestChecksAChrootsManifestAndSnapshotAndRefusesHostileOnes() async throws {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let layout = try fixture.layout("a")
        let keyFile = fixture.stateDirectory + "/" + SigningKeyFile.publicName
        let key = ["--public-key-file", keyFile]
        var output = try await Self.verifyManifest([layout.manifest, "--host", "a", "--check-snapshot"] + key)
        #expect(output.exitCode == 0, "\(output.standardError)")
        let payload = try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any]
        #expect(payload?["host"] as? String == "a" && payload?["generation"] as? Int == 1)
        let keyText = try String(contentsOfFile: keyFile, encoding: .utf8).trimmingWhitespace()
        output = try await Self.verifyManifest([layout.manifest, "--host", "a", "--public-key", keyText])
        #expect(output.exitCode == 0, "\(output.standardError)")

        let refused = RunOutcome.refused.exitStatus
        let original = try FileIO.read(layout.manifest)
        let lines = String(decoding: original, as: UTF8.self).split(separator: "\n").map(String.init)
        let scratch = fixture.directory.path("scratch")
        try FileIO.createDirectories(scratch)
        func check(_ name: String, _ bytes: [UInt8], expect reason: String) async throws {
            try FileIO.writeAtomically(bytes, to: scratch + "/" + name, mode: 0o644)
            let output = try await Self.verifyManifest([scratch + "/" + name, "--host", "a"] + key)
            #expect(output.exitCode == refused, "\(name): \(output.standardOutput)\(output.standardError)")
            #expect(output.standardError.contains(reason), "\(name): \(output.standardError)")
            #expect(output.standardOutput.isEmpty, "\(name): nothing of a refused manifest is printed")
            #expect(!output.standardError.contains("\u{1b}"), "\(name): escapes are shown, not sent")
        }
        // Another host's manifest, an edited payload, another key's signature, junk, too big, two signatures,
        // and a signer's name that is an escape sequence.
        try await check("of-b", try FileIO.read(try fixture.layout("b").manifest), expect: "is for host b, not a")
        let edited = lines[0].replacingOccurrences(of: "\"generation\":1", with: "\"generation\":9")
        try await check("edited", Array((edited + "\n" + lines[1] + "\n").utf8), expect: "signature")
        let stranger = try SigningKey(generatingWithName: "test-fleet-1")
        let payloadBytes = Array(lines[0].utf8)
        try await check(
            "stranger", payloadBytes + [0x0a] + Array(try stranger.sign(payloadBytes).utf8) + [0x0a],
            expect: "signature")
        try await check("junk", Array("not a manifest\n".utf8), expect: "refused")
        try await check("huge", [UInt8](repeating: 0x20, count: Manifest.sizeLimit + 1), expect: "over the limit")
        try await check(
            "two", Array((lines[0] + "\n" + lines[1] + "\n" + lines[1] + "\n").utf8), expect: "one signature")
        try await check("escape", Array((lines[0] + "\n\u{1b}[2Jevil:AAAA\n").utf8), expect: "refused")
        // A link (as a host could never be served) is refused, not followed.
        guard symlink(layout.manifest, scratch + "/link") == 0 else { throw TestSupportError("symlink failed") }
        output = try await Self.verifyManifest([scratch + "/link", "--host", "a"] + key)
        #expect(output.exitCode == refused && output.standardError.contains("symbolic link"), "\(output.standardError)")

        // A snapshot that is not the one signed for.
        let snapshot = layout.snapshot(1)
        let bytes = try FileIO.read(snapshot)
        try FileIO.writeAtomically(bytes.dropLast() + [bytes.last! ^ 1], to: snapshot, mode: 0o640)
        output = try await Self.verifyManifest([layout.manifest, "--host", "a"] + key)
        #expect(output.exitCode == 0, "without --check-snapshot only the manifest is checked")
        output = try await Self.verifyManifest([layout.manifest, "--host", "a", "--check-snapshot"] + key)
        #expect(output.exitCode == refused && output.standardError.contains("SHA-256"), "\(output.standardError)")
        try FileIO.removeTree(snapshot)
        output = try await Self.verifyManifest([layout.manifest, "--host", "a", "--check-snapshot"] + key)
        #expect(output.exitCode == refused && output.standardError.contains("missing"), "\(output.standardError)")

        // A file that is not there cannot be read (1); a wrong argument is a usage error (64).
        output = try await Self.verifyManifest([scratch + "/missing", "--host", "a"] + key)
        #expect(output.exitCode == 1, "\(output.standardError)")
        output = try await Self.verifyManifest([layout.manifest, "--host", "A B"] + key)
        #expect(output.exitCode == 64, "\(output.standardError)")
    }
}

extension FleetCLITests {
    // MARK: client-config lists fleet.toml's mirrors

    /// fleet.toml's `[[mirrors]]` become client.toml's `[[servers]]`, in order, so each host fails over to them;
    /// a mirror at the address and port the host connects to first is refused by name.
    @Test func clientConfigListsTheMirrorsInOrderAndRefusesOneAtThePrimarysAddress() async throws {
        func mirror(_ name: String, _ address: String) -> String {
            """
            [[mirrors]]
            name = "\(name)"
            address = "\(address)"
            port = 2222
            host_key = "\(FleetConfigurationTests.keyA)"
            push_to = "root@\(address):/srv/fleet"

            """
        }
        let fixture = try FleetFixture(
            hosts: ["a"], extraToml: mirror("mirror-b", "b.example.org") + mirror("mirror-a", "a.example.org"))
        defer { fixture.remove() }
        let key = try KeyPair.generate(at: fixture.directory.path("host_key"), comment: "root@server")
        var output = try await fixture.fleet([
            "client-config", "a", "--server-address", "fleet.example.org", "--host-public-key",
            key.privateKeyPath + ".pub",
        ])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let client = try ClientConfiguration.parse(output.standardOutput, file: "client.toml")
        #expect(client.mirrors.map(\.name) == ["mirror-b", "mirror-a"])
        #expect(client.mirrors.map(\.address) == ["b.example.org", "a.example.org"])
        #expect(
            client.mirrors.allSatisfy {
                $0.port == 2222 && $0.hostKey == (try? SSHPublicKey(FleetConfigurationTests.keyA))
            })

        output = try await fixture.fleet([
            "client-config", "a", "--server-address", "b.example.org", "--port", "2222", "--host-public-key",
            key.privateKeyPath + ".pub",
        ])
        #expect(output.exitCode != 0)
        #expect(output.standardError.contains("mirror mirror-b has the address and port"), "\(output.standardError)")
        #expect(!output.standardOutput.contains("[server]"), "nothing half-made is printed")
    }
}
