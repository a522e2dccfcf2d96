import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import Testing

/// Host-local overlays: `fleet-client overlay add|remove|list`, a system built as the fleet's configuration
/// extended with the overlays' modules, kept on top of new generations, and refused when hostile.
///
/// Host names `ovlhost`, `ovlbase`, `ovlplain` and `ovlinput` are this suite's alone.
@Suite(.serialized) struct OverlayTests: ClientRunSuite {
    static let overlayLine = "a line from the local overlay"

    /// A flake overlay whose `nixosModules.default` adds `motd` (a Nix expression for a list of strings).
    static func writeFlakeOverlay(in directory: TestDirectory, _ name: String, motd: String) throws {
        try directory.makeDirectory(name)
        try directory.writeFile(
            "\(name)/flake.nix",
            text: """
                {
                  outputs = { self }: {
                    nixosModules.default = { motd = \(motd); };
                  };
                }

                """)
    }

    /// The toplevel the fleet's configuration alone gives for the host's current generation.
    static func baseToplevel(_ fleet: ClientFleet, _ host: String) async throws -> String {
        let tree = fleet.stateDirectory(host) + "/current/tree"
        let output = try await Command.run(
            "nix",
            [
                "--extra-experimental-features", "nix-command flakes", "eval", "--raw",
                "path:\(tree)#nixosConfigurations.\(host).config.system.build.toplevel.outPath",
            ])
        #expect(output.exitCode == 0, "\(output.standardError)")
        return output.standardOutput
    }

    static func motd(of system: String) throws -> String {
        String(decoding: try FileIO.read(system + "/etc/motd"), as: UTF8.self)
    }

    @Test func anOverlayIsBuiltOnTopOfEachGenerationAndRemovingItRestoresTheFleetSystem() async throws {
        let fleet = try await ClientFleet.start(hosts: ["ovlhost"])
        defer { fleet.stop() }
        let checkout = try TestDirectory.makeTemporary()
        defer { checkout.remove() }

        #expect(try await fleet.client("ovlhost").exitCode == Self.applied)
        let base = try #require(try fleet.state("ovlhost").applied?.system)

        try Self.writeFlakeOverlay(in: checkout, "site", motd: "[ \"\(Self.overlayLine)\" ]")
        let added = try await fleet.client("ovlhost", ["overlay", "add", "site", checkout.path("site"), "--apply"])
        #expect(added.exitCode == Self.applied, "\(added.standardOutput)\(added.standardError)")
        let composed = try #require(try fleet.state("ovlhost").applied)
        #expect(composed.system != base && composed.overlays != nil)
        #expect(try Self.motd(of: composed.system).contains(Self.overlayLine))
        #expect(try Self.motd(of: composed.system).contains("ovlhost"), "the fleet's modules stay")
        #expect(try fleet.profileGeneration("ovlhost")?.system == composed.system)
        let listed = try await fleet.client("ovlhost", ["overlay", "list", "--json"])
        let overlays = try JSONDecoder().decode([Overlay].self, from: Data(listed.standardOutput.utf8))
        #expect(overlays.map(\.name) == ["site"])
        #expect(
            try fleet.lastReport("ovlhost")?.overlays == [RunReport.Overlay(name: "site", digest: overlays[0].digest)])

        // The job that added it deletes its checkout: the copy in the state is what is built.
        checkout.remove()
        #expect(try await fleet.client("ovlhost").exitCode == Self.unchanged)

        // A new fleet generation is applied with the overlay still on top.
        try fleet.fixture.write("hosts/ovlhost/configuration.nix", "{ motd = [ \"ovlhost second\" ]; }\n")
        try await fleet.publish()
        #expect(try await fleet.client("ovlhost").exitCode == Self.applied)
        let second = try #require(try fleet.state("ovlhost").applied)
        #expect(second.generation == composed.generation + 1)
        #expect(try Self.motd(of: second.system).contains("ovlhost second"))
        #expect(try Self.motd(of: second.system).contains(Self.overlayLine))

        // Removing the last overlay gives exactly the fleet's system again.
        let removed = try await fleet.client("ovlhost", ["overlay", "remove", "site", "--apply"])
        #expect(removed.exitCode == Self.applied, "\(removed.standardOutput)\(removed.standardError)")
        let plain = try #require(try fleet.state("ovlhost").applied)
        #expect(plain.overlays == nil)
        #expect(plain.system == (try await Self.baseToplevel(fleet, "ovlhost")))
        #expect(try !Self.motd(of: plain.system).contains(Self.overlayLine))
        #expect(try fleet.lastReport("ovlhost")?.overlays == nil)
        #expect(try await fleet.client("ovlhost").exitCode == Self.unchanged)
    }

    @Test func anOverlayThatDoesNotEvaluateFailsTheRunNamingItAndThePreviousSystemStays() async throws {
        let fleet = try await ClientFleet.start(hosts: ["ovlbase"])
        defer { fleet.stop() }
        let checkout = try TestDirectory.makeTemporary()
        defer { checkout.remove() }

        #expect(try await fleet.client("ovlbase").exitCode == Self.applied)
        let before = try #require(try fleet.state("ovlbase").applied)
        let profile = try fleet.profileGeneration("ovlbase")

        try Self.writeFlakeOverlay(in: checkout, "broken", motd: "(throw \"this overlay needs option x\")")
        let output = try await fleet.client(
            "ovlbase", ["overlay", "add", "broken", checkout.path("broken"), "--apply"])
        #expect(output.exitCode == Self.failed, "\(output.standardOutput)\(output.standardError)")
        #expect(output.standardError.contains("with the local overlay(s) broken ("), "\(output.standardError)")
        #expect(output.standardError.contains("this overlay needs option x"), "\(output.standardError)")
        let state = try fleet.state("ovlbase")
        #expect(state.applied == before, "the previous system stays")
        #expect(try fleet.profileGeneration("ovlbase")?.number == profile?.number)
        #expect(state.failed?.generation == before.generation && state.failed?.overlays != nil)
        #expect(
            try fleet.lastReport("ovlbase")?.overlays?.map(\.name) == ["broken"], "the report names the overlays")
        // Not tried again with the same overlays; removing it leaves the fleet's system, which is running.
        #expect(try await fleet.client("ovlbase").exitCode == Self.unchanged)
        #expect(
            try await fleet.client("ovlbase", ["overlay", "remove", "broken", "--apply"]).exitCode == Self.unchanged)
        #expect(try fleet.state("ovlbase").applied == before)
    }

    @Test func aPlainModuleOverlayAndAFlakeOverlayAreBuiltTogether() async throws {
        let fleet = try await ClientFleet.start(hosts: ["ovlplain"])
        defer { fleet.stop() }
        let checkout = try TestDirectory.makeTemporary()
        defer { checkout.remove() }

        try checkout.makeDirectory("plain")
        try checkout.writeFile("plain/default.nix", text: "{ motd = [ \"from a plain module\" ]; }\n")
        try Self.writeFlakeOverlay(in: checkout, "site", motd: "[ \"\(Self.overlayLine)\" ]")
        #expect(try await fleet.client("ovlplain", ["overlay", "add", "plain", checkout.path("plain")]).exitCode == 0)
        #expect(try await fleet.client("ovlplain", ["overlay", "add", "site", checkout.path("site")]).exitCode == 0)
        let listed = try await fleet.client("ovlplain", ["overlay", "list"])
        #expect(listed.standardOutput.contains("plain  module") && listed.standardOutput.contains("site   flake"))

        let output = try await fleet.client("ovlplain")
        #expect(output.exitCode == Self.applied, "\(output.standardOutput)\(output.standardError)")
        let system = try #require(try fleet.state("ovlplain").applied?.system)
        let motd = try Self.motd(of: system)
        #expect(motd.contains("from a plain module") && motd.contains(Self.overlayLine) && motd.contains("ovlplain"))
        #expect(try fleet.lastReport("ovlplain")?.overlays?.map(\.name) == ["plain", "site"])
    }

    /// An overlay's flake inputs stay its own: its module uses a value of its own input (a local flake standing in
    /// for another nixpkgs revision), and the base's lock file and system never see that input.
    @Test func anOverlaysOwnInputIsUsedAndTheBaseDoesNotSeeIt() async throws {
        let fleet = try await ClientFleet.start(hosts: ["ovlinput"])
        defer { fleet.stop() }
        let checkout = try TestDirectory.makeTemporary()
        defer { checkout.remove() }
        #expect(try await fleet.client("ovlinput").exitCode == Self.applied)
        let tree = fleet.stateDirectory("ovlinput") + "/current/tree"
        let baseLock = try? FileIO.read(tree + "/flake.lock")

        try checkout.makeDirectory("other-nixpkgs")
        try checkout.writeFile(
            "other-nixpkgs/flake.nix", text: "{ outputs = { self }: { lib.release = \"other-nixpkgs-99.11\"; }; }\n")
        try checkout.makeDirectory("job")
        try checkout.writeFile(
            "job/flake.nix",
            text: """
                {
                  inputs.othernixpkgs.url = "path:\(checkout.path("other-nixpkgs"))";
                  outputs = { self, othernixpkgs }: {
                    nixosModules.default = { motd = [ "built with ${othernixpkgs.lib.release}" ]; };
                  };
                }

                """)
        let added = try await fleet.client("ovlinput", ["overlay", "add", "job", checkout.path("job"), "--apply"])
        #expect(added.exitCode == Self.applied, "\(added.standardOutput)\(added.standardError)")
        let system = try #require(try fleet.state("ovlinput").applied?.system)
        #expect(try Self.motd(of: system).contains("built with other-nixpkgs-99.11"))
        #expect(try Self.motd(of: system).contains("ovlinput"), "the fleet's modules stay")

        // The base: its lock file is byte for byte what was published, and its own system knows nothing of it.
        #expect((try? FileIO.read(tree + "/flake.lock")) == baseLock)
        if let baseLock { #expect(!String(decoding: baseLock, as: UTF8.self).contains("othernixpkgs")) }
        let base = try await Self.baseToplevel(fleet, "ovlinput")
        #expect(base != system)
        #expect(try !Self.motd(of: base).contains("other-nixpkgs"))
    }

    /// Everything under the state directory, with sizes, and the record's bytes: what a refusal must not change.
    static func snapshot(of stateDirectory: String) throws -> [String] {
        var found: [String] = []
        func walk(_ relative: String) throws {
            let path = relative.isEmpty ? stateDirectory : stateDirectory + "/" + relative
            for name in try FileIO.listDirectory(path).sorted() where name != "lock" {
                let entry = relative.isEmpty ? name : relative + "/" + name
                let status = try #require(try FileStatus.of(stateDirectory + "/" + entry))
                found.append("\(entry) \(status.kind) \(status.size)")
                if status.kind == .directory { try walk(entry) }
                if status.kind == .regular {
                    found.append(SHA256Hasher.hex(try FileIO.read(stateDirectory + "/" + entry)))
                }
            }
        }
        try walk("")
        return found
    }

    @Test func hostileOverlaysAreRefusedAndNothingChanges() throws {
        let work = try TestDirectory.makeTemporary()
        defer { work.remove() }
        try work.makeDirectory("state", mode: 0o755)
        let store = OverlayStore(
            stateDirectory: work.path("state"), limits: OverlayStore.Limits(entries: 8, bytes: 4096))

        // A good one first, with a link that stays inside: it is what every refusal must leave alone.
        try Self.writeFlakeOverlay(in: work, "good", motd: "[ \"good\" ]")
        try work.makeDirectory("good/lib")
        try work.writeFile("good/lib/module.nix", text: "{ }\n")
        #expect(symlink("lib/module.nix", work.path("good/inner")) == 0)
        let good = try store.add(name: "site", from: work.path("good"))
        #expect(good.kind == .flake)
        #expect(try FileIO.readLink(store.path(of: "site") + "/inner") == "lib/module.nix")
        #expect(try FileStatus.of(store.path(of: "site") + "/flake.nix")?.permissions == 0o600)
        #expect(try FileStatus.of(work.path("state/overlays"))?.permissions == 0o700)
        let before = try Self.snapshot(of: work.path("state"))

        func refused(_ name: String, _ directory: String, _ expected: String) {
            do {
                try store.add(name: name, from: directory)
                Issue.record("\(String(reflecting: name)) from \(directory) was added")
            } catch {
                #expect(error.description.contains(expected), "\(error)")
            }
            #expect((try? Self.snapshot(of: work.path("state"))) == before, "\(name) \(directory)")
            #expect((try? store.load()) == [good])
        }

        for name in ["a/b", "..", "", "Site", "../site", "-x", String(repeating: "a", count: 64)] {
            refused(name, work.path("good"), "is not an overlay name")
        }
        try Self.writeFlakeOverlay(in: work, "passwd", motd: "[ ]")
        #expect(symlink("/etc/passwd", work.path("passwd/secret")) == 0)
        refused("site", work.path("passwd"), "is a link to /etc/passwd, outside the overlay")
        try Self.writeFlakeOverlay(in: work, "escape", motd: "[ ]")
        try work.makeDirectory("escape/sub")
        #expect(symlink("../../passwd/flake.nix", work.path("escape/sub/up")) == 0)
        refused("site", work.path("escape"), "outside the overlay")
        try Self.writeFlakeOverlay(in: work, "fifo", motd: "[ ]")
        #expect(mkfifo(work.path("fifo/pipe"), 0o600) == 0)
        refused("site", work.path("fifo"), "is a fifo")
        try Self.writeFlakeOverlay(in: work, "big", motd: "[ ]")
        try work.writeFile("big/blob", [UInt8](repeating: 7, count: 5000))
        refused("site", work.path("big"), "more than 4096 bytes")
        try Self.writeFlakeOverlay(in: work, "many", motd: "[ ]")
        for index in 0..<9 { try work.writeFile("many/f\(index)", text: "\(index)") }
        refused("site", work.path("many"), "more than 8 entries")
        try work.makeDirectory("empty")
        refused("site", work.path("empty"), "neither flake.nix")
        refused("site", work.path("missing"), "is not a directory")

        // A plain default.nix module is an overlay too; removing it leaves the others.
        try work.makeDirectory("plain")
        try work.writeFile("plain/default.nix", text: "{ motd = [ \"plain\" ]; }\n")
        #expect(try store.add(name: "plain", from: work.path("plain")).kind == .module)
        try store.remove(name: "plain")
        #expect(try store.load() == [good])
        #expect(try FileStatus.of(store.path(of: "plain")) == nil)
        #expect(throws: ClientError.self) { try store.remove(name: "plain") }

        // A copy lost from under the record stops runs (load), and remove still clears it.
        try FileIO.removeTree(store.path(of: "site"))
        #expect(throws: ClientError.self) { try store.load() }
        try store.remove(name: "site")
        #expect(try store.load().isEmpty)
    }

    @Test func onlyRootCanAddOverlays() async throws {
        let work = try TestDirectory.makeTemporary()
        defer { work.remove() }
        try Self.writeFlakeOverlay(in: work, "site", motd: "[ ]")
        try FileIO.setMode(work.path(""), 0o755)
        let output = try await Command.run(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", FleetFixture.executable("fleet-client"), "overlay",
                "add", "site", work.path("site"), "--config", work.path("client.toml"),
            ])
        #expect(output.exitCode == 1, "\(output.standardOutput)\(output.standardError)")
        #expect(output.standardError.contains("only root can add or remove overlays"), "\(output.standardError)")
        #expect(try FileIO.listDirectory(work.path("")).sorted() == ["site"])
    }
}
