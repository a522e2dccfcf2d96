import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import FleetTestSupport
import Foundation
import HostAgent
import Testing

/// `[overlays] protect_units`: an overlay apply or removal that would stop or restart a protected unit (as the
/// toy's `switch-to-configuration dry-activate` says, in NixOS's words) is refused, or staged for the next boot;
/// and `fleet status` marks a host running overlays.
///
/// Host names `ovprot` and `ovprotrm` are this suite's alone.
@Suite(.serialized) struct OverlayProtectionTests: ClientRunSuite {
    /// A flake overlay whose module changes the configuration of `units` (the toy restarts them on a switch).
    static func writeOverlay(in directory: TestDirectory, _ name: String, restarting units: [String]) throws {
        try directory.makeDirectory(name)
        let list = units.map { "\"\($0)\"" }.joined(separator: " ")
        try directory.writeFile(
            "\(name)/flake.nix",
            text: """
                {
                  outputs = { self }: {
                    nixosModules.default = { motd = [ "overlay \(name)" ]; restartUnits = [ \(list) ]; };
                  };
                }

                """)
    }

    static func protect(_ fleet: ClientFleet, _ host: String, _ units: String, policy: String = "refuse") throws {
        try fleet.editClientConfiguration(host) { text in
            text.replacing(#/protect_units = \[[^\]]*\]/#, with: "protect_units = [\(units)]")
                .replacing(#/protect_policy = "[a-z]+"/#, with: "protect_policy = \"\(policy)\"")
        }
    }

    struct StatusOutput: Decodable { var hosts: [HostStatus] }

    @Test func aProtectedUnitRefusesTheSwitchAndBootStagesIt() async throws {
        let fleet = try await ClientFleet.start(hosts: ["ovprot"])
        defer { fleet.stop() }
        let checkout = try TestDirectory.makeTemporary()
        defer { checkout.remove() }
        try Self.protect(fleet, "ovprot", "\"sshd.service\"")

        #expect(try await fleet.client("ovprot").exitCode == Self.applied)
        let before = try #require(try fleet.state("ovprot").applied)
        let profile = try #require(try fleet.profileGeneration("ovprot"))
        let activations = fleet.activations("ovprot")

        try Self.writeOverlay(in: checkout, "runner", restarting: ["sshd.service", "runner-agent.service"])
        let refused = try await fleet.client(
            "ovprot", ["overlay", "add", "runner", checkout.path("runner"), "--apply"])
        #expect(refused.exitCode == Self.failed, "\(refused.standardOutput)\(refused.standardError)")
        for expected in [
            "would stop or restart sshd.service", "with the local overlay(s) runner (", "protect_policy = \"boot\"",
            "the previous system stays",
        ] {
            #expect(refused.standardError.contains(expected), "\(expected): \(refused.standardError)")
        }
        var state = try fleet.state("ovprot")
        #expect(state.failed?.reason.contains("runner-agent") == false, "only protected units are named")
        #expect(state.applied == before, "the previous system stays")
        #expect(try fleet.profileGeneration("ovprot")?.number == profile.number)
        #expect(fleet.activations("ovprot") == activations, "nothing was activated (dry-activate is not)")
        #expect(state.failed?.generation == before.generation && state.failed?.overlays != nil)
        #expect(try fleet.lastReport("ovprot")?.state == .failed)

        // Not asked again on every timer run.
        let again = try await fleet.client("ovprot")
        #expect(again.exitCode == Self.unchanged, "\(again.standardError)")
        #expect(!again.standardError.contains("dry-activate"))

        // protect_policy = "boot": staged for the next boot, nothing activated now.
        try Self.protect(fleet, "ovprot", "\"sshd.service\"", policy: "boot")
        try FileIO.createDirectories(fleet.clients.path("ovprot/run"))
        for link in ["booted-system", "current-system"] {
            #expect(symlink(before.system, fleet.clients.path("ovprot/run/\(link)")) == 0)
        }
        try fleet.editClientConfiguration("ovprot") { text in
            text.replacingOccurrences(
                of: "[reboot]\n",
                with: "[reboot]\nbooted_system = \"\(fleet.clients.path("ovprot/run/booted-system"))\"\n"
                    + "current_system = \"\(fleet.clients.path("ovprot/run/current-system"))\"\n")
        }
        let staged = try await fleet.client("ovprot")
        #expect(staged.exitCode == Self.applied, "\(staged.standardOutput)\(staged.standardError)")
        #expect(staged.standardError.contains("staged for next boot"), "\(staged.standardError)")
        #expect(staged.standardError.contains("sshd.service"))
        state = try fleet.state("ovprot")
        let composed = try #require(state.applied)
        #expect(composed.system != before.system && composed.operation == "boot" && composed.overlays != nil)
        #expect(try fleet.profileGeneration("ovprot")?.system == composed.system, "the boot default changed")
        #expect(fleet.activations("ovprot") == activations + ["boot ovprot \(composed.system)"], "nothing restarted")
        #expect(
            state.rebootNeeded?.contains("staged for the next boot") == true,
            "\(String(describing: state.rebootNeeded))")
        #expect(state.failed == nil)
        #expect(try fleet.lastReport("ovprot")?.operation == "boot")

        // The host runs an overlay: fleet status marks it, up to date on its base generation, and lists it.
        #expect(try await fleet.client("ovprot").exitCode == Self.unchanged)
        let digest = try #require(try OverlayStore(stateDirectory: fleet.stateDirectory("ovprot")).load().first?.digest)
        let json = try await fleet.fixture.fleet(["status", "--json"])
        let row = try #require(
            try JSONDecoder().decode(StatusOutput.self, from: Data(json.standardOutput.utf8)).hosts.first)
        #expect(row.state == .upToDate, "\(json.standardOutput)")
        #expect(row.overlays == [RunReport.Overlay(name: "runner", digest: digest)], "\(json.standardOutput)")
        let table = try await fleet.fixture.fleet(["status"])
        #expect(table.standardOutput.contains("up to date (+1 overlay)"), "\(table.standardOutput)")
    }

    @Test func aRemovalThatWouldRestartAProtectedUnitIsRefused() async throws {
        let fleet = try await ClientFleet.start(hosts: ["ovprotrm"])
        defer { fleet.stop() }
        let checkout = try TestDirectory.makeTemporary()
        defer { checkout.remove() }
        try Self.protect(fleet, "ovprotrm", "\"sshd.service\"")
        #expect(try await fleet.client("ovprotrm").exitCode == Self.applied)

        // An overlay that restarts only units nobody protects is applied (after the dry run said so).
        try Self.writeOverlay(in: checkout, "docker", restarting: ["docker.service"])
        let docker = try await fleet.client(
            "ovprotrm", ["overlay", "add", "docker", checkout.path("docker"), "--apply"])
        #expect(docker.exitCode == Self.applied, "\(docker.standardOutput)\(docker.standardError)")
        #expect(docker.standardError.contains("would restart the following units: docker.service"))

        // One that restarts sshd, applied while nothing was protected, cannot be removed once sshd is.
        try Self.protect(fleet, "ovprotrm", "")
        try Self.writeOverlay(in: checkout, "sshkeys", restarting: ["sshd.service"])
        let added = try await fleet.client(
            "ovprotrm", ["overlay", "add", "sshkeys", checkout.path("sshkeys"), "--apply"])
        #expect(added.exitCode == Self.applied, "\(added.standardOutput)\(added.standardError)")
        let composed = try #require(try fleet.state("ovprotrm").applied)
        let profile = try fleet.profileGeneration("ovprotrm")
        let activations = fleet.activations("ovprotrm")

        try Self.protect(fleet, "ovprotrm", "\"runner.service\", \"sshd.service\"")
        let removed = try await fleet.client("ovprotrm", ["overlay", "remove", "sshkeys", "--apply"])
        #expect(removed.exitCode == Self.failed, "\(removed.standardOutput)\(removed.standardError)")
        #expect(removed.standardError.contains("would stop or restart sshd.service"), "\(removed.standardError)")
        #expect(removed.standardError.contains("with the local overlay(s) docker ("), "\(removed.standardError)")
        let state = try fleet.state("ovprotrm")
        #expect(state.applied == composed, "the system with the overlay stays")
        #expect(try fleet.profileGeneration("ovprotrm")?.number == profile?.number)
        #expect(fleet.activations("ovprotrm") == activations)
        #expect(try await fleet.client("ovprotrm").exitCode == Self.unchanged, "not asked again")

        // Removing the last overlay too: the fleet's system, which restarts sshd as well; refused, naming it.
        let last = try await fleet.client("ovprotrm", ["overlay", "remove", "docker", "--apply"])
        #expect(last.exitCode == Self.failed, "\(last.standardOutput)\(last.standardError)")
        #expect(last.standardError.contains("without the local overlay(s) it ran with"), "\(last.standardError)")
        #expect(try fleet.state("ovprotrm").applied == composed)
    }
}
