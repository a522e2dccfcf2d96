import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import Testing

/// `operation = "test"`: like `nixos-rebuild test`, only `switch-to-configuration test`, with real profiles.
extension ClientRollbackTests {
    @Test func operationTestActivatesWithoutTouchingTheProfileOrTheBootDefault() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        #expect(try await fleet.client("alpha").exitCode == Self.applied)
        let good = try #require(try fleet.profileGeneration("alpha"))
        let profiles = FileIO.split(fleet.profile("alpha")).directory
        let linksBefore = try FileIO.listDirectory(profiles).sorted()

        // alpha is the last table of fleet.toml: the line belongs to it.
        let toml = try String(contentsOfFile: fleet.fixture.repository + "/fleet.toml", encoding: .utf8)
        try fleet.fixture.write("fleet.toml", toml + "operation = \"test\"\n")
        try fleet.fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"tested\" ]; }\n")
        try await fleet.publish()
        var output = try await fleet.client("alpha")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(output.standardError.contains("the boot default stay as they are"), "\(output.standardError)")
        var state = try fleet.state("alpha")
        let tested = try #require(state.applied?.system)
        #expect(state.applied?.generation == 2 && state.applied?.operation == "test" && tested != good.system)
        #expect(
            Array(fleet.activations("alpha").dropFirst(2)) == ["test alpha \(tested)"],
            "only switch-to-configuration test, never boot: \(fleet.activations("alpha"))")
        var profile = try #require(try fleet.profileGeneration("alpha"))
        #expect(profile.number == good.number && profile.system == good.system, "the profile is untouched")
        #expect(try FileIO.listDirectory(profiles).sorted() == linksBefore, "no profile generation was added")
        var report = try #require(try fleet.lastReport("alpha"))
        #expect(report.state == .applied && report.operation == "test" && report.profileGeneration == nil)
        #expect(report.targetSystem == tested)

        // A tested generation that is not confirmed goes back to the system that ran (the tested one before
        // it), with `test` again; the profile is still not touched.
        try fleet.editClientConfiguration("alpha") { text in
            text.components(separatedBy: "\n[[health_checks]]")[0]
                + "\n[[health_checks]]\nname = \"down\"\ncommand = [\"/bin/false\"]\ntimeout_seconds = 5\n"
        }
        try fleet.fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"tested again\" ]; }\n")
        try await fleet.publish()
        output = try await fleet.client("alpha")
        #expect(output.exitCode == RunOutcome.rolledBack.exitStatus, "\(output.standardError)")
        let third = try #require(fleet.activations("alpha").dropFirst(3).first?.split(separator: " ").last)
        #expect(
            Array(fleet.activations("alpha").dropFirst(3)) == ["test alpha \(third)", "test alpha \(tested)"],
            "\(fleet.activations("alpha"))")
        profile = try #require(try fleet.profileGeneration("alpha"))
        #expect(profile.number == good.number && profile.system == good.system)
        #expect(try FileIO.listDirectory(profiles).sorted() == linksBefore)
        state = try fleet.state("alpha")
        #expect(state.applied?.generation == 2 && state.failed?.generation == 3 && state.failed?.state == .rolledBack)
        report = try #require(try fleet.lastReport("alpha"))
        #expect(report.state == .rolledBack && report.profileGeneration == nil)
    }
}
