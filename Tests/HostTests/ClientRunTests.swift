@_spi(Testing) import ArchiveKit
import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import Publishing
import ServerStore
import Testing

/// `fleet-client run` against a real sshd, real chroots and the real Nix: the whole loop, and its refusals.
///
/// Serialized, and in parallel with the other client suites: see ``ClientRunSuite``.
@Suite("fleet-client run with a real sshd and Nix", .serialized)
struct ClientRunTests: ClientRunSuite {
    @Test func threeHostsApplyStayUnchangedAndApplyAChange() async throws {
        let nixStore = try NixStoreEntries()
        let token = "SECRET-" + UUID().uuidString
        let fleet = try await ClientFleet.start(hosts: ["alpha", "beta", "gamma"]) { fixture in
            try fixture.write("secrets/beta/api-token", token + "\n", mode: 0o600)
            // gamma is the last table in fleet.toml: this line belongs to it.
            try fixture.write(
                "fleet.toml",
                try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                    + "operation = \"boot\"\n")
        }
        defer { fleet.stop() }

        for host in fleet.hosts {
            let output = try await fleet.client(host)
            #expect(output.exitCode == Self.applied, "\(host): \(output.standardError)")
            #expect(output.standardError.contains("building nixosConfigurations.\(host)"), "progress is shown")
            let state = try fleet.state(host)
            #expect(state.applied?.generation == 1)
            let system = try #require(state.applied?.system)
            #expect(system.hasPrefix("/nix/store/") && system.hasSuffix("nixos-system-\(host)-toy"))
            let operation = host == "gamma" ? "boot" : "switch"
            #expect(fleet.activations(host) == ClientFleet.activations(of: system, host: host, operation: operation))
            let profile = try #require(try fleet.profileGeneration(host))
            #expect(profile.number == 1 && profile.system == system)
            let report = try #require(try fleet.lastReport(host))
            #expect(report.state == .applied && report.generation == 1 && report.targetSystem == system)
            #expect(report.exitCodes.build == 0 && report.exitCodes.activation == 0)
            let uploaded = try fleet.uploaded(host)
            #expect(uploaded.contains(try #require(report.log)), "the log named by the report was uploaded")
            #expect(!uploaded.contains { $0.hasPrefix(".fleet-tmp-") }, "no temporary file left: \(uploaded)")
            let log = String(decoding: try FileIO.read(try fleet.layout(host).logs + "/" + report.log!), as: UTF8.self)
            #expect(
                log.contains(" build path:")
                    && log.contains("switch-to-configuration \(operation == "switch" ? "test" : operation)"))
        }

        // beta's secret is installed root 0400 in a 0700 directory, outside the tree and out of the Nix store.
        let secrets = fleet.stateDirectory("beta") + "/secrets"
        #expect(String(decoding: try FileIO.read(secrets + "/api-token"), as: UTF8.self) == token + "\n")
        let secretFile = try #require(try FileStatus.following(secrets + "/api-token"))
        #expect(secretFile.permissions == 0o400 && secretFile.owner == 0)
        #expect(try FileStatus.following(secrets)?.permissions == 0o700)
        #expect(try FileStatus.of(fleet.stateDirectory("beta") + "/generations/1/secrets") == nil)
        #expect(try FileStatus.of(fleet.stateDirectory("beta") + "/generations/1/tree/flake.nix") != nil)
        try Self.expectNotInTheStore([token], addedSince: nixStore)

        // Nothing new: a heartbeat, no build, no activation.
        for host in fleet.hosts {
            let output = try await fleet.client(host)
            #expect(output.exitCode == Self.unchanged, "\(host): \(output.standardError)")
            #expect(!output.standardError.contains("building"))
            #expect(fleet.activations(host).count == (host == "gamma" ? 1 : 2))
            let beat = try HeartbeatFiles.heartbeat(in: try fleet.layout(host).logs)
            #expect(beat.appliedGeneration == 1 && beat.lastResult == .unchanged && beat.host == host)
        }

        // A change in common/ (and a new secret for beta) reaches every host as generation 2 and a new profile
        // generation.
        let rotated = "SECRET-" + UUID().uuidString
        try fleet.fixture.write("secrets/beta/api-token", rotated + "\n", mode: 0o600)
        try fleet.fixture.write("common/base.nix", "{ motd = [ \"shared, edited\" ]; }\n")
        try await fleet.publish()
        for host in fleet.hosts {
            let output = try await fleet.client(host)
            #expect(output.exitCode == Self.applied, "\(host): \(output.standardError)")
            let state = try fleet.state(host)
            #expect(state.applied?.generation == 2 && state.lastSeen?.generation == 2)
            #expect(try fleet.profileGeneration(host)?.number == 2)
            #expect(try fleet.profileGeneration(host)?.system == state.applied?.system)
            #expect(fleet.activations(host).count == (host == "gamma" ? 2 : 4))
            #expect(try FileIO.readLink(fleet.stateDirectory(host) + "/current") == "generations/2")
        }
        #expect(String(decoding: try FileIO.read(secrets + "/api-token"), as: UTF8.self) == rotated + "\n")
        try Self.expectNotInTheStore([token, rotated], addedSince: nixStore)

        // beta's configuration no longer builds: beta fails and keeps generation 2, the others have nothing new.
        try fleet.fixture.write("hosts/beta/configuration.nix", "{ motd = [ (builtins.throw \"beta broke\") ]; }\n")
        try await fleet.publish()
        for host in fleet.hosts {
            let output = try await fleet.client(host)
            #expect(
                output.exitCode == (host == "beta" ? Self.failed : Self.unchanged), "\(host): \(output.standardError)")
        }
        var beta = try fleet.state("beta")
        #expect(beta.applied?.generation == 2 && beta.failed?.generation == 3 && beta.lastResult == .failed)
        #expect(try fleet.profileGeneration("beta")?.number == 2 && fleet.activations("beta").count == 4)
        #expect(try fleet.lastReport("beta")?.state == .failed)
        try await Self.expectNotRetried(fleet, "beta")
        // Fixed and republished: beta applies the newer generation.
        try fleet.fixture.write("hosts/beta/configuration.nix", "{ motd = [ \"beta fixed\" ]; }\n")
        try await fleet.publish()
        let output = try await fleet.client("beta")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        beta = try fleet.state("beta")
        #expect(beta.applied?.generation == 4 && beta.failed == nil)
        #expect(try fleet.profileGeneration("beta")?.number == 3 && fleet.activations("beta").count == 6)
        try Self.expectNotInTheStore([token, rotated], addedSince: nixStore)

        let status = try await fleet.client("beta", ["status", "--json"])
        #expect(status.exitCode == 0)
        let decoded = try JSONSerialization.jsonObject(with: Data(status.standardOutput.utf8)) as? [String: Any]
        let state = decoded?["state"] as? [String: Any]
        #expect((state?["applied"] as? [String: Any])?["generation"] as? Int == 4)
        #expect(state?["lastResult"] as? String == "applied")
        let text = try await fleet.client("alpha", ["status"])
        #expect(text.standardOutput.contains("applied:      generation 2"))
        #expect(text.standardOutput.contains("unchanged"), "\(text.standardOutput)")
    }

    @Test func configurationNixWithoutAFlakeIsBuiltFromNixPath() async throws {
        let fleet = try await ClientFleet.start(hosts: ["plain"]) { fixture in
            unlink(fixture.repository + "/hosts/plain/flake.nix")
            try fixture.write("hosts/plain/configuration.nix", "{ motd = [ \"a host without a flake\" ]; }\n")
        }
        defer { fleet.stop() }
        // A stand-in for a nixpkgs channel: <nixpkgs/nixos> evaluates <nixos-config>, as the real one does.
        try FileIO.createDirectories(fleet.clients.path("toy-nixpkgs/nixos"))
        try fleet.clients.writeFile("toy-nixpkgs/nixos/toy-nixos.nix", text: ClientFleet.toyNixOS)
        try fleet.clients.writeFile(
            "toy-nixpkgs/nixos/default.nix",
            text: """
                { configuration ? <nixos-config> }:
                let evaluated = import ./toy-nixos.nix { hostName = "plain"; modules = [ configuration ]; };
                in { system = evaluated.config.system.build.toplevel; config = evaluated.config; }

                """)

        let output = try await fleet.client(
            "plain", environment: ["NIX_PATH": "nixpkgs=" + fleet.clients.path("toy-nixpkgs")])
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        let system = try #require(try fleet.state("plain").applied?.system)
        #expect(fleet.activations("plain") == ClientFleet.activations(of: system, host: "plain", operation: "switch"))
        let log = try fleet.lastReport("plain")
        #expect(log?.state == .applied)
        let motd = try String(contentsOfFile: system + "/etc/motd", encoding: .utf8)
        #expect(motd.contains("a host without a flake"))
    }

    @Test func aFailedBuildKeepsThePreviousSystemAndWaitsForANewerGeneration() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        let good = try #require(try fleet.profileGeneration("alpha"))

        try fleet.fixture.write(
            "hosts/alpha/configuration.nix", "{ motd = [ (builtins.throw \"a typo in alpha\") ]; }\n")
        try await fleet.publish()
        var output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.failed, "\(output.standardError)")
        #expect(output.standardError.contains("a typo in alpha"), "the reason names the cause")
        #expect(try fleet.profileGeneration("alpha")?.number == good.number)
        #expect(try fleet.profileGeneration("alpha")?.system == good.system)
        #expect(fleet.activations("alpha").count == 2)
        var state = try fleet.state("alpha")
        #expect(state.applied?.generation == 1 && state.failed?.generation == 2 && state.lastResult == .failed)
        let report = try #require(try fleet.lastReport("alpha"))
        #expect(report.state == .failed && report.generation == 2 && report.exitCodes.build == 1)
        let log = String(decoding: try FileIO.read(try fleet.layout("alpha").logs + "/" + report.log!), as: UTF8.self)
        #expect(log.contains("a typo in alpha"), "the uploaded log holds Nix's error")

        try await Self.expectNotRetried(fleet, "alpha")

        // A newer generation is tried, and applies.
        try fleet.fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"fixed\" ]; }\n")
        try await fleet.publish()
        output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        state = try fleet.state("alpha")
        #expect(state.applied?.generation == 3 && state.failed == nil)
        #expect(try fleet.profileGeneration("alpha")?.number == good.number + 1)
    }

    @Test func aFailedActivationRestoresTheProfileAndReactivatesThePreviousSystem() async throws {
        let nixStore = try NixStoreEntries()
        let token = "SECRET-" + UUID().uuidString
        let fleet = try await ClientFleet.start(hosts: ["alpha"]) { fixture in
            try fixture.write("secrets/alpha/token", token, mode: 0o600)
        }
        defer { fleet.stop() }
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        let good = try #require(try fleet.profileGeneration("alpha"))

        // A system whose switch-to-configuration fails.
        try fleet.fixture.write(
            "hosts/alpha/flake.nix",
            """
            {
              outputs = { self }: {
                nixosConfigurations.alpha.config.system.build.toplevel = derivation {
                  name = "nixos-system-alpha-broken"; system = "x86_64-linux"; builder = "/bin/sh";
                  args = [ "-c" "/bin/mkdir -p $out/bin && printf '#!/bin/sh\\necho activation broke >&2\\nexit 3\\n' > $out/bin/switch-to-configuration && /bin/chmod +x $out/bin/switch-to-configuration" ];
                };
              };
            }

            """)
        try fleet.fixture.write("secrets/alpha/token", "new " + token, mode: 0o600)
        try await fleet.publish()
        let output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.failed, "\(output.standardError)")
        #expect(output.standardError.contains("switch-to-configuration test exited with status 3"))
        let profile = try #require(try fleet.profileGeneration("alpha"))
        #expect(profile.number == good.number && profile.system == good.system)
        #expect(try FileStatus.of(fleet.clients.path("alpha/profiles/system-2-link")) == nil)
        // The previous system was activated again after the failure.
        #expect(
            fleet.activations("alpha") == ClientFleet.activations(of: good.system, host: "alpha", operation: "switch")
                + ["switch alpha \(good.system)"])
        #expect(try FileIO.readLink(fleet.stateDirectory("alpha") + "/secrets") == "secrets.d/1")
        #expect(try fleet.lastReport("alpha")?.exitCodes.activation == 3)
        try Self.expectNotInTheStore([token], addedSince: nixStore)
    }

    @Test func hostileManifestsAndSnapshotsAreRefusedAndNothingIsApplied() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha", "beta"])
        defer { fleet.stop() }
        for host in fleet.hosts { #expect(try await fleet.client(host).exitCode == Self.applied) }
        let layout = try fleet.layout("alpha")
        let good = try FileIO.read(layout.manifest)
        let goodManifest = try fleet.manifest("alpha")

        /// Plants something, runs alpha, expects a refusal naming `why`, and checks nothing was applied.
        func expectRefusal(_ why: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let before = try fleet.profileGeneration("alpha")
            let reportsBefore = try fleet.uploaded("alpha").filter { $0.hasPrefix("report-") }.count
            let output = try await fleet.client("alpha")
            #expect(output.exitCode == Self.refused, "\(output.standardError)", sourceLocation: sourceLocation)
            #expect(output.standardError.contains(why), "\(output.standardError)", sourceLocation: sourceLocation)
            #expect(try fleet.profileGeneration("alpha")?.number == before?.number, sourceLocation: sourceLocation)
            #expect(fleet.activations("alpha").count == 2, sourceLocation: sourceLocation)
            let report = try fleet.lastReport("alpha")
            #expect(report?.state == .refused, sourceLocation: sourceLocation)
            #expect(
                try fleet.uploaded("alpha").filter { $0.hasPrefix("report-") }.count == reportsBefore + 1,
                sourceLocation: sourceLocation)
        }

        // A byte of the payload changed.
        var tampered = good
        let index = try #require(tampered.firstIndex(of: UInt8(ascii: "1")))
        tampered[index] = UInt8(ascii: "7")
        try fleet.plant("alpha", "/manifest", tampered)
        try await expectRefusal("does not verify")

        // beta's valid manifest, copied into alpha's chroot.
        try fleet.plant("alpha", "/manifest", try FileIO.read(try fleet.layout("beta").manifest))
        try await expectRefusal("signed for host beta")

        // Signed by a key the host does not trust.
        let stranger = try SigningKey(generatingWithName: "stranger-1")
        try fleet.plant("alpha", "/manifest", try goodManifest.signed(with: stranger))
        try await expectRefusal("not trusted")

        // Larger than any manifest.
        try fleet.plant("alpha", "/manifest", good + [UInt8](repeating: 0x20, count: Manifest.sizeLimit))
        try await expectRefusal("larger than")

        // The same generation with other content, validly signed (a replay or a confused server).
        var twin = goodManifest
        twin.contentDigest = String(repeating: "0", count: 64)
        try fleet.plantManifest("alpha", twin)
        try await expectRefusal("reuses generation 1")

        // A snapshot path outside snapshots/.
        var elsewhere = goodManifest
        elsewhere.generation = 5
        elsewhere.snapshot.path = "/../beta/snapshots/1.tar.zst"
        try fleet.plantManifest("alpha", elsewhere)
        try await expectRefusal("names the snapshot")

        // Generation 6 whose snapshot does not match its hash.
        try fleet.plant("alpha", "/manifest", good)
        try fleet.fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"second\" ]; }\n")
        try await fleet.publish(["alpha"])
        let second = try fleet.manifest("alpha")
        let snapshot = try FileIO.read(layout.snapshot(second.generation))
        var corrupted = snapshot
        corrupted[corrupted.count / 2] ^= 0xff
        try fleet.plant("alpha", ChrootLayout.snapshotPathInChroot(second.generation), corrupted)
        try await expectRefusal("sha256")
        #expect(try FileStatus.of(fleet.stateDirectory("alpha") + "/generations/\(second.generation)") == nil)
        #expect(
            try FileIO.listDirectory(fleet.stateDirectory("alpha") + "/generations").allSatisfy { !$0.hasPrefix(".") })

        // With the real snapshot back, it applies.
        try fleet.plant("alpha", ChrootLayout.snapshotPathInChroot(second.generation), snapshot)
        let output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(try fleet.state("alpha").applied?.generation == second.generation)

        // The old manifest again: a downgrade.
        try fleet.plant("alpha", "/manifest", good)
        let before = try fleet.profileGeneration("alpha")
        let downgrade = try await fleet.client("alpha")
        #expect(downgrade.exitCode == Self.refused)
        #expect(downgrade.standardError.contains("lower than generation \(second.generation)"))
        #expect(try fleet.profileGeneration("alpha")?.number == before?.number)
        #expect(try fleet.state("alpha").applied?.generation == second.generation)
    }

    @Test func hostileArchivesAreRefusedWithoutWritingOutsideTheirDirectory() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        var manifest = try fleet.manifest("alpha")
        let escape = fleet.clients.path("alpha/escaped")
        let cases: [(name: String, entries: [(String, SnapshotWriter.RawEntryKind)], why: String)] = [
            (
                "dot-dot",
                [("tree", .directory), ("tree/flake.nix", .regularFile), ("tree/../../../escaped", .regularFile)],
                "\"..\""
            ),
            (
                "absolute", [("tree", .directory), ("tree/flake.nix", .regularFile), (escape, .regularFile)],
                "its path is absolute"
            ),
            (
                "symlink",
                [
                    ("tree", .directory), ("tree/flake.nix", .regularFile),
                    ("tree/passwd", .symbolicLink(target: "/etc/passwd")),
                ], "symbolic link"
            ),
            (
                "hardlink",
                [
                    ("tree", .directory), ("tree/flake.nix", .regularFile),
                    ("tree/shadow", .hardLink(target: "/etc/shadow")),
                ], "hard link"
            ),
            (
                "device",
                [
                    ("tree", .directory), ("tree/flake.nix", .regularFile),
                    ("tree/sda", .blockDevice(major: 8, minor: 0)),
                ], "snapshots hold only directories and regular files"
            ),
            ("no tree", [("other", .directory), ("other/flake.nix", .regularFile)], "not tree/"),
        ]
        for hostile in cases {
            let archive = fleet.clients.path("hostile-\(manifest.generation + 1).tar.zst")
            let writer = try SnapshotWriter(path: archive)
            for (path, kind) in hostile.entries {
                try writer.addRawEntry(path: path, kind: kind, permissions: 0o644, bytes: Array("x\n".utf8))
            }
            try writer.finish()
            let bytes = try FileIO.read(archive)
            manifest.generation += 1
            manifest.snapshot = .init(
                path: ChrootLayout.snapshotPathInChroot(manifest.generation), size: Int64(bytes.count),
                sha256: SHA256Hasher.hex(bytes))
            manifest.contentDigest = SHA256Hasher.hex(bytes)
            try fleet.plant("alpha", manifest.snapshot.path, bytes)
            try fleet.plantManifest("alpha", manifest)

            let output = try await fleet.client("alpha")
            #expect(output.exitCode == Self.refused, "\(hostile.name): \(output.standardError)")
            #expect(output.standardError.contains(hostile.why), "\(hostile.name): \(output.standardError)")
            #expect(try fleet.state("alpha").applied?.generation == 1, "\(hostile.name)")
            #expect(try FileStatus.of(fleet.stateDirectory("alpha") + "/generations/\(manifest.generation)") == nil)
            for path in [escape, fleet.stateDirectory("alpha") + "/escaped", fleet.clients.path("escaped")] {
                #expect(try FileStatus.of(path) == nil, "\(hostile.name) wrote \(path)")
            }
        }
        #expect(fleet.activations("alpha").count == 2)
    }

    @Test func aServerWithAnotherHostKeyOrAnUntrustedFleetKeyIsRefused() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        let impostor = try KeyPair.generate(at: fleet.clients.path("impostor"), comment: "impostor")
        try await fleet.writeClientConfiguration(
            "alpha", extraArguments: ["--host-public-key", impostor.privateKeyPath + ".pub"])
        var output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.refused, "\(output.standardError)")
        let seen = try TestCommand.check("/usr/bin/ssh-keygen", ["-l", "-E", "sha256", "-f", fleet.serverHostKeyFile])
            .standardOutput.split(separator: " ")[1]
        #expect(output.standardError.contains(try impostor.fingerprint()), "names the pinned fingerprint")
        #expect(output.standardError.contains(String(seen)), "names the fingerprint the server showed")
        #expect(try fleet.state("alpha").lastResult == .refused && fleet.activations("alpha").isEmpty)

        try await fleet.writeClientConfiguration("alpha")
        let config = try String(contentsOfFile: fleet.configPath("alpha"), encoding: .utf8)
        let stranger = try SigningKey(generatingWithName: "stranger-1").publicKey.nixFormat
        let replaced = config.split(separator: "\n").map {
            $0.hasPrefix("fleet_public_key") ? "fleet_public_key = \"\(stranger)\"" : String($0)
        }.joined(separator: "\n")
        try fleet.clients.writeFile("alpha/client.toml", text: replaced)
        output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.refused, "\(output.standardError)")
        #expect(output.standardError.contains("not trusted"))
        #expect(fleet.activations("alpha").isEmpty)
        #expect(try fleet.profileGeneration("alpha") == nil)
    }

    @Test func anUnreachableServerChangesNothing() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        let before = try fleet.state("alpha")
        let profile = try fleet.profileGeneration("alpha")
        try await fleet.writeClientConfiguration("alpha", extraArguments: ["--port", "\(try LoopbackPort.free())"])
        let output = try await fleet.client("alpha")
        #expect(output.exitCode == RunOutcome.unreachable.exitStatus, "\(output.standardError)")
        #expect(output.standardError.contains("Nothing was changed"))
        let after = try fleet.state("alpha")
        #expect(
            after.applied == before.applied && after.lastSeen == before.lastSeen && after.lastResult == .unreachable)
        #expect(try fleet.profileGeneration("alpha")?.number == profile?.number)
        #expect(fleet.activations("alpha").count == 2)
    }

    @Test func runsNeverOverlap() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        try FileIO.createDirectories(fleet.stateDirectory("alpha"))
        do {
            let held = try #require(try FileLock.acquire(fleet.stateDirectory("alpha") + "/lock", wait: false))
            let output = try await fleet.client("alpha")
            #expect(output.exitCode == RunOutcome.locked.exitStatus)
            #expect(output.standardError.contains("another fleet-client run holds"))
            #expect(fleet.activations("alpha").isEmpty)
            withExtendedLifetime(held) {}
        }
        // Two real runs at once: the first is held inside its activation (by the toy system's hook) while the
        // second starts, so the second meets the lock for certain; then the first is let go and applies.
        let inside = fleet.clients.path("inside-activation")
        let release = fleet.clients.path("release-activation")
        try fleet.clients.writeFile(
            "hold.sh",
            text: """
                #!/bin/sh
                [ "$1" = test ] || exit 0
                : > \(inside)
                for _ in $(seq 200); do [ -e \(release) ] && exit 0; sleep 0.1; done
                exit 0

                """, mode: 0o755)
        async let first = fleet.client("alpha", environment: ["FLEET_ACTIVATION_HOOK": fleet.clients.path("hold.sh")])
        let deadline = ContinuousClock.now + .seconds(60)
        while try FileStatus.of(inside) == nil && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(try FileStatus.of(inside) != nil, "the first run never reached its activation")
        let going = try #require(try RunProgress.load(stateDirectory: fleet.stateDirectory("alpha")))
        let second = try await fleet.client("alpha")
        #expect(second.exitCode == RunOutcome.locked.exitStatus, "\(second.standardError)")
        #expect(second.standardError.contains("another fleet-client run holds"))
        // The page follows the run holding the lock: the locked one leaves its progress alone.
        #expect(try RunProgress.load(stateDirectory: fleet.stateDirectory("alpha")) == going)
        #expect(going.phase == .running && going.id == 1 && going.pid != nil, "\(going)")
        try fleet.clients.writeFile("release-activation", text: "")
        let applied = try await first
        #expect(applied.exitCode == Self.applied, "\(applied.standardError)")
        #expect(fleet.activations("alpha").count == 2)
        let done = try #require(try RunProgress.load(stateDirectory: fleet.stateDirectory("alpha")))
        #expect(done.id == 1 && done.phase == .finished && done.outcome == "applied", "\(done)")
        #expect(done.exitStatus == Self.applied && done.summary?.hasPrefix("applied: ") == true)
        #expect(done.lines.first?.hasPrefix("connecting to ") == true && done.lines.last == done.summary)
    }

    @Test func aReportThatCannotBeUploadedIsKeptAndSentOnTheNextContact() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        let logs = try fleet.layout("alpha").logs
        try fleet.fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"second\" ]; }\n")
        try await fleet.publish()
        // logs/ read-only: neither the confirmation nor the report can be written, so the new generation is
        // rolled back and its report waits in the outbox.
        #expect(chmod(logs, 0o500) == 0)
        var output = try await fleet.client("alpha")
        #expect(chmod(logs, 0o700) == 0)
        #expect(output.exitCode == RunOutcome.rolledBack.exitStatus, "\(output.standardError)")
        #expect(output.standardError.contains("kept in"))
        let outbox = fleet.stateDirectory("alpha") + "/outbox"
        let kept = try FileIO.listDirectory(outbox).sorted()
        #expect(kept.count == 2 && kept.contains { $0.hasPrefix("report-") && $0.hasSuffix("-g2.json") }, "\(kept)")
        #expect(try fleet.lastReport("alpha")?.generation == 1)

        output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)")
        #expect(try FileIO.listDirectory(outbox).isEmpty)
        let report = try #require(try fleet.lastReport("alpha"))
        #expect(report.generation == 2 && report.state == .rolledBack)
        #expect(try fleet.uploaded("alpha").contains(kept[0]))
    }
}

extension ClientRunSuite {
    /// A failed generation is not tried again on the next run: no download, no build, no new report.
    static func expectNotRetried(
        _ fleet: ClientFleet, _ host: String, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let reports = try fleet.uploaded(host).filter { $0.hasPrefix("report-") }.count
        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.unchanged, "\(output.standardError)", sourceLocation: sourceLocation)
        #expect(
            output.standardError.contains("not tried again") && !output.standardError.contains("building"),
            "\(output.standardError)", sourceLocation: sourceLocation)
        #expect(
            try fleet.uploaded(host).filter { $0.hasPrefix("report-") }.count == reports, sourceLocation: sourceLocation
        )
    }

    /// No secret's bytes in the Nix store (secrets travel beside the tree, never into a flake source): in the
    /// store paths made since `store` was listed, where a secret made after it would have to be.
    static func expectNotInTheStore(
        _ secrets: [String], addedSince store: NixStoreEntries, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let found = try store.filesHolding(secrets)
        #expect(found.isEmpty, "a secret is in the Nix store: \(found)", sourceLocation: sourceLocation)
    }
}
