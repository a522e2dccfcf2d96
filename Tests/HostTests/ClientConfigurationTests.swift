import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import SystemdUnitFiles
import Testing

@Suite("client.toml and the run log")
struct ClientConfigurationTests {
    static let hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@server"

    static func fleetKey() throws -> String { try SigningKey(generatingWithName: "fleet-1").publicKey.nixFormat }

    @Test func renderedConfigurationParsesBackTheSame() throws {
        let configuration = ClientConfiguration(
            host: try HostName("alpha"),
            server: .init(
                address: "fleet.example.org", port: 2222, user: "fleet-alpha", hostKey: try SSHPublicKey(Self.hostKey)),
            fleetPublicKey: try VerifyingKey(nixFormat: try Self.fleetKey()), operation: .boot)
        let parsed = try ClientConfiguration.parse(configuration.rendered(), file: "client.toml")
        #expect(parsed == configuration)
        #expect(
            parsed.identityFile == "/etc/ssh/ssh_host_ed25519_key" && parsed.stateDirectory == "/var/lib/fleet-client")
        #expect(parsed.profile == "/nix/var/nix/profiles/system")
    }

    @Test func everyProblemIsReportedAtOnceNamingFileAndKey() throws {
        let text = """
            host = "Alpha_1"
            fleet_public_key = "fleet-1:bm90IGEga2V5"
            identity_file = "relative/key"
            colour = "blue"
            operation = "reboot"
            [server]
            address = "fleet.example.org"
            port = 70000
            user = "root; rm -rf /"
            host_key = "ssh-ed25519 AAAA"
            """
        let error = try #require(throws: ConfigurationError.self) {
            try ClientConfiguration.parse(text, file: "/etc/fleet/client.toml")
        }
        let problems = error.problems
        for expected in [
            "unknown key \"colour\"", "invalid host name \"Alpha_1\"", "fleet_public_key", "\"identity_file\"",
            "\"operation\": \"reboot\"", "\"port\"", "\"user\"", "\"host_key\"",
        ] {
            #expect(problems.contains { $0.contains(expected) }, "missing \(expected) in \(problems)")
        }
        #expect(problems.allSatisfy { $0.hasPrefix("/etc/fleet/client.toml") })
    }

    @Test func aNULCharacterIsRefusedNotCutShort() throws {
        for text in ["host = \"alpha\"\nstate_dir = \"/var/lib/fleet-client\\u0000x\"\n", "host = \"alpha\"\n\0\n"] {
            let error = try #require(throws: ConfigurationError.self) {
                try ClientConfiguration.parse(text, file: "/etc/fleet/client.toml")
            }
            #expect(error.problems.count == 1 && error.problems[0].hasPrefix("/etc/fleet/client.toml:2:"))
            #expect(error.problems[0].contains("NUL"), "\(error.problems)")
        }
    }

    @Test func missingServerAndRequiredKeysAreNamed() throws {
        let error = try #require(throws: ConfigurationError.self) { try ClientConfiguration.parse("", file: "c.toml") }
        for key in ["[server] table is missing", "\"host\" is required", "\"fleet_public_key\" is required"] {
            #expect(error.description.contains(key), "\(error)")
        }
        let syntax = try #require(throws: ConfigurationError.self) {
            try ClientConfiguration.parse("host = ", file: "c.toml")
        }
        #expect(syntax.description.hasPrefix("c.toml:1:"))
    }

    @Test func theLogIsCutInTheMiddleAndSaysSo() {
        let log = RunLog(host: "alpha", limit: 8192, isTerminal: false) { _ in }
        log.phase("first line")
        for index in 0..<2000 {
            log.output(of: "cmd \(index)", exitCode: 0, standardOutput: "line \(index)", standardError: "")
        }
        log.phase("last line")
        let text = String(decoding: log.contents(), as: UTF8.self)
        #expect(text.contains("first line") && text.contains("last line"))
        #expect(text.contains("bytes of this log were cut here"))
        #expect(log.contents().count < 8192 + 200)
    }
}

extension ClientConfigurationTests {
    /// `[timeouts]`: parsed, rendered back, refused when absurd; the run's unit outlasts the longest run.
    @Test func timeoutsParseRenderAndBoundTheUnit() throws {
        var configuration = ClientConfiguration(
            host: try HostName("alpha"),
            server: .init(
                address: "fleet.example.org", port: 22, user: "fleet-alpha", hostKey: try SSHPublicKey(Self.hostKey)),
            fleetPublicKey: try VerifyingKey(nixFormat: try Self.fleetKey()))
        #expect(configuration.timeouts == .init(buildSeconds: 3600, activationSeconds: 900))
        configuration.timeouts = .init(buildSeconds: 100, activationSeconds: 50)
        let text = configuration.rendered()
        #expect(text.contains("[timeouts]\nbuild_seconds = 100\nactivation_seconds = 50\n"))
        #expect(try ClientConfiguration.parse(text, file: "client.toml") == configuration)
        #expect(configuration.longestRunSeconds == 100 + 50 + 90 + 600)
        let units = try SystemdUnits(
            binary: "/usr/local/bin/fleet-client", configuration: "/etc/fleet/client.toml",
            runTimeoutSeconds: configuration.longestRunSeconds)
        let service = try #require(units.units.first { $0.name == SystemdUnits.serviceName })
        #expect(service.text.contains("\nTimeoutStartSec=840\n"))

        for hostile in ["build_seconds = 0", "build_seconds = -5", "activation_seconds = \"forever\"", "colour = 1"] {
            let bad = text.replacingOccurrences(of: "build_seconds = 100", with: hostile)
            #expect(throws: ConfigurationError.self, "\(hostile)") {
                try ClientConfiguration.parse(bad, file: "client.toml")
            }
        }
    }
}
