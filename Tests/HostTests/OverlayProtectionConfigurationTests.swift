import FleetProtocol
import FleetTestSupport
import Foundation
import Testing

@testable import HostAgent

/// `[overlays] protect_units` and `protect_policy` in client.toml, and the reading of what
/// `switch-to-configuration dry-activate` prints: no fleet, no Nix.
@Suite("overlay protection: configuration and dry-activate output")
struct OverlayProtectionConfigurationTests {
    static func configuration() throws -> ClientConfiguration {
        ClientConfiguration(
            host: try HostName("alpha"),
            server: .init(
                address: "fleet.example.org", port: 22, user: "fleet-alpha",
                hostKey: try SSHPublicKey(ClientConfigurationTests.hostKey)),
            fleetPublicKey: try VerifyingKey(nixFormat: try ClientConfigurationTests.fleetKey()))
    }

    @Test func protectedUnitsParseAndRenderBack() throws {
        var configuration = try Self.configuration()
        #expect(configuration.overlays == .init(protectUnits: [], protectPolicy: .refuse))
        #expect(try ClientConfiguration.parse(configuration.rendered(), file: "client.toml") == configuration)
        configuration.overlays = .init(
            protectUnits: [
                "sshd.service", "gitlab-runner.service", "getty@tty1.service", "dev-disk-by\\x2dlabel.swap",
            ],
            protectPolicy: .boot)
        let text = configuration.rendered()
        #expect(text.contains("[overlays]\nprotect_units = [\"sshd.service\", "), "\(text)")
        #expect(text.contains("protect_policy = \"boot\"\n"))
        #expect(try ClientConfiguration.parse(text, file: "client.toml") == configuration)

        // Written twice, kept once.
        let doubled = text.replacingOccurrences(
            of: "protect_units = [\"sshd.service\", ", with: "protect_units = [\"sshd.service\", \"sshd.service\", ")
        #expect(try ClientConfiguration.parse(doubled, file: "client.toml") == configuration)
    }

    @Test func hostileProtectedUnitsAndPoliciesAreRefusedNamingTheKey() throws {
        let text = try Self.configuration().rendered()
        let tooMany = (0...ClientConfiguration.protectUnitsLimit).map { "\"u\($0).service\"" }.joined(separator: ", ")
        let hostile: [(String, String)] = [
            ("protect_units = [\"sshd\"]", "is not a systemd unit name"),
            ("protect_units = [\"\"]", "is not a systemd unit name"),
            ("protect_units = [\"../../etc/passwd.service\"]", "is not a systemd unit name"),
            ("protect_units = [\"sshd.service\\nroot.service\"]", "is not a systemd unit name"),
            ("protect_units = [\"ssh d.service\"]", "is not a systemd unit name"),
            ("protect_units = [\"sshd.service\\u001b[2J\"]", "is not a systemd unit name"),
            ("protect_units = [\"-x.service\"]", "is not a systemd unit name"),
            ("protect_units = [\".service\"]", "is not a systemd unit name"),
            ("protect_units = [\"sshd.exe\"]", "is not a systemd unit name"),
            ("protect_units = [\"\(String(repeating: "a", count: 250)).service\"]", "is not a systemd unit name"),
            ("protect_units = [\"sshd.service\", 7]", "expected an array of strings"),
            ("protect_units = \"sshd.service\"", "expected an array of strings"),
            ("protect_units = [\(tooMany)]", "at most \(ClientConfiguration.protectUnitsLimit)"),
            ("protect_policy = \"reboot\"", "is not one of refuse, boot"),
            ("protect_policy = 1", "expected a string"),
        ]
        for (line, expected) in hostile {
            let key = line.hasPrefix("protect_units") ? "protect_units = []" : "protect_policy = \"refuse\""
            let bad = text.replacingOccurrences(of: key, with: line)
            #expect(bad != text)
            let error = try #require(throws: ConfigurationError.self, "\(line)") {
                try ClientConfiguration.parse(bad, file: "/etc/fleet/client.toml")
            }
            #expect(error.problems.count == 1, "\(error.problems)")
            #expect(
                error.problems.allSatisfy { $0.contains("[overlays]") && $0.contains(expected) }, "\(error.problems)")
            #expect(error.problems.allSatisfy { !$0.contains("\u{1b}") && !$0.contains("\nroot") })
        }
        let unknown = text.replacingOccurrences(of: "[overlays]\n", with: "[overlays]\nprotect_everything = true\n")
        #expect(throws: ConfigurationError.self) { try ClientConfiguration.parse(unknown, file: "client.toml") }
    }

    /// NixOS's wording (switch-to-configuration.pl and -ng print the same to standard error).
    @Test func dryActivateOutputIsReadInNixOSWording() {
        let output = """
            would stop the following units: docker.service, sshd.service
            would NOT stop the following changed units: systemd-journald.service
            would activate the configuration...
            setting up /etc... would restart the following units: sshd.service
            would restart systemd
            would reload the following units: dbus.service
            would restart the following units: gitlab-runner.service, nscd.service \t
            would start the following units: docker.service, sshd.service
            """
        let parsed = DryActivation.parse(output.split(whereSeparator: \.isNewline).map(String.init))
        #expect(parsed.stopped == ["docker.service", "sshd.service"])
        #expect(parsed.restarted == ["gitlab-runner.service", "nscd.service"], "only lines that start so count")
        #expect(parsed.disrupted == ["docker.service", "sshd.service", "gitlab-runner.service", "nscd.service"])
        #expect(DryActivation.parse(["would reload the following units: sshd.service"]).disrupted.isEmpty)
        #expect(DryActivation.parse([]).disrupted.isEmpty)

        let refuse = ClientConfiguration.Overlays(protectUnits: ["sshd.service", "dbus.service"])
        #expect(OverlayProtection.verdict(parsed, refuse, operation: "switch") == .refuse(["sshd.service"]))
        let boot = ClientConfiguration.Overlays(protectUnits: ["sshd.service"], protectPolicy: .boot)
        #expect(OverlayProtection.verdict(parsed, boot, operation: "switch") == .stageForBoot(["sshd.service"]))
        #expect(OverlayProtection.verdict(parsed, boot, operation: "test") == .refuse(["sshd.service"]))
        let other = ClientConfiguration.Overlays(protectUnits: ["runner.service"])
        #expect(OverlayProtection.verdict(parsed, other, operation: "switch") == .proceed)

        // Checked only when the overlays change and the switch is live, with units to protect.
        #expect(OverlayProtection.needsCheck(refuse, operation: "switch", applied: nil, overlaySet: "a"))
        #expect(OverlayProtection.needsCheck(refuse, operation: "test", applied: "a", overlaySet: nil))
        #expect(!OverlayProtection.needsCheck(refuse, operation: "switch", applied: "a", overlaySet: "a"))
        #expect(!OverlayProtection.needsCheck(refuse, operation: "switch", applied: nil, overlaySet: nil))
        #expect(!OverlayProtection.needsCheck(refuse, operation: "boot", applied: nil, overlaySet: "a"))
        #expect(!OverlayProtection.needsCheck(.init(), operation: "switch", applied: nil, overlaySet: "a"))
    }
}
