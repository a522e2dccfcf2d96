import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Inventory
import Publishing
import ServerStore
import Testing

/// `address` (client.toml and fleet.toml) and `host_key` (client.toml): checked where they are read, refused
/// naming the file and the key, with hostile values cut short in the message.
@Suite("server addresses and host keys in client.toml and fleet.toml")
struct ServerAddressTests {
    static let hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@server"
    static let otherKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEZ0eN8Z0dL3K4PmbnuIgCnu3Ijd1hwFv4ErS/fCcWa/ host-b"

    static let hostileAddresses = [
        "fleet\"example.org", "fleet.example.org\nHostKey /etc/shadow", "fleet example.org",
        String(repeating: "a", count: 10 << 20), "", "fleet.example.org; rm -rf /", "-oProxyCommand=sh", "[::1]",
        "999.1.1.1", "1.2.3.4.5", "fleet..example.org", "-fleet.example.org", "fleet-.example.org", "flé.example.org",
        String(repeating: "a", count: 64) + ".org", String(repeating: "a.", count: 127) + "org", "::1%lo",
        "fleet.example.org:22", "root@fleet.example.org", "fleet.example.org.", "\u{1b}[31mfleet",
    ]
    static let goodAddresses = [
        "fleet.example.org", "localhost", "127.0.0.1", "::1", "2001:db8::1", "Fleet-01.Example.ORG", "10.0.0.1", "a.b",
        "::ffff:192.0.2.1", String(repeating: "a", count: 63) + ".org",
    ]

    /// A TOML basic string holding `value` exactly.
    static func toml(_ value: String) -> String {
        var result = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f:
                result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    static func clientToml(address: String = "fleet.example.org", hostKey: String = hostKey, stateDirectory: String)
        throws -> String
    {
        let fleetKey = try SigningKey(generatingWithName: "fleet-1").publicKey.nixFormat
        return """
            host = "alpha"
            fleet_public_key = \(toml(fleetKey))
            state_dir = \(toml(stateDirectory))
            [server]
            address = \(toml(address))
            user = "fleet-alpha"
            host_key = \(toml(hostKey))

            """
    }

    static func fleetToml(address: String = "fleet.example.org", hostKey: String = hostKey) -> String {
        "[server]\naddress = \(toml(address))\nhost_key = \(toml(hostKey))\n"
    }

    /// The problems of a client.toml, or nil when it loads.
    static func clientProblems(_ text: String) -> [String]? {
        do {
            _ = try ClientConfiguration.parse(text, file: "/etc/fleet/client.toml")
            return nil
        } catch {
            return error.problems
        }
    }

    /// The problems of a fleet.toml (in a repository with no hosts), or nil when it loads.
    static func fleetProblems(_ text: String) throws -> [String]? {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try FileIO.createDirectories(directory.path("hosts"))
        do {
            _ = try FleetConfiguration.parse(text, file: directory.path("fleet.toml"), repository: directory.path)
            return nil
        } catch {
            return error.problems.map { $0.replacingOccurrences(of: directory.path, with: "REPO") }
        }
    }

    @Test func hostileAddressesAreRefusedNamingFileAndKeyInBothFiles() throws {
        for address in Self.hostileAddresses {
            let shown = String(reflecting: address.prefix(60))
            let client = Self.clientProblems(try Self.clientToml(address: address, stateDirectory: "/var/lib/fc"))
            #expect(client?.count == 1, "\(shown): \(client ?? [])")
            #expect(
                client?.first?.hasPrefix("/etc/fleet/client.toml: [server] key \"address\": ") == true,
                "\(shown): \(client ?? [])")
            #expect(client?.first?.contains("is not a host name or an IP address") == true, "\(shown)")
            #expect((client?.first?.utf8.count ?? 0) < 1000, "a hostile value is cut short: \(shown)")
            #expect(client?.first?.contains("\n") == false, "no forged lines: \(shown)")

            let fleet = try Self.fleetProblems(Self.fleetToml(address: address))
            #expect(fleet?.count == 1, "\(shown): \(fleet ?? [])")
            #expect(fleet?.first?.hasPrefix("REPO/fleet.toml: [server] key \"address\": ") == true, "\(shown)")
            #expect((fleet?.first?.utf8.count ?? 0) < 1000, "\(shown)")
        }
    }

    @Test func hostNamesAndIPLiteralsAreAccepted() throws {
        for address in Self.goodAddresses {
            let client = Self.clientProblems(try Self.clientToml(address: address, stateDirectory: "/var/lib/fc"))
            #expect(client == nil, "\(address): \(client ?? [])")
            #expect(try Self.fleetProblems(Self.fleetToml(address: address)) == nil, "\(address)")
            #expect(ServerAddress.problem(address) == nil, "\(address)")
        }
    }

    /// client.toml's `host_key` goes through the same check as fleet.toml's: the same verdict for every value.
    @Test func hostileHostKeysGetTheSameVerdictInClientTomlAsInFleetToml() throws {
        let refusedToday = [
            "", "ssh-ed25519", "ssh-ed25519 AAAA", "ssh-ed25519 !!!not-base64!!!", "not-a-type AAAAC3NzaC1lZDI1NTE5",
            "-----BEGIN OPENSSH PRIVATE KEY-----", String(repeating: "A", count: 10 << 20),
            "ssh-ed25519 " + String(repeating: "A", count: 10 << 20),
        ]
        let hostile =
            refusedToday + [
                Self.hostKey + "\n" + Self.otherKey, Self.hostKey + "\r\n" + Self.otherKey,
                Self.hostKey + " \u{1b}[31mred", Self.hostKey + "\u{0}", "restrict " + Self.hostKey,
            ]
        for key in hostile {
            let shown = String(reflecting: key.prefix(60))
            let client = Self.clientProblems(try Self.clientToml(hostKey: key, stateDirectory: "/var/lib/fc"))
            let fleet = try Self.fleetProblems(Self.fleetToml(hostKey: key))
            #expect(
                (client == nil) == (fleet == nil), "\(shown): client.toml \(client ?? []), fleet.toml \(fleet ?? [])")
            if let client {
                #expect(
                    client.contains {
                        $0.hasPrefix("/etc/fleet/client.toml: [server] key \"host_key\": ") || $0.contains("NUL")
                    }, "\(shown)")
            }
            if refusedToday.contains(key) { #expect(client != nil, "\(shown) must be refused") }
        }
        #expect(Self.clientProblems(try Self.clientToml(stateDirectory: "/var/lib/fc")) == nil)
    }

    /// The real executables: a refused configuration stops them before they touch anything.
    @Test func aHostileAddressStopsTheClientAndTheServerBeforeTheyTouchAnything() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let state = directory.path("state")
        for address in ["fleet.example.org\"\nuser = \"root", String(repeating: "x", count: 10 << 20)] {
            let text = try Self.clientToml(address: address, stateDirectory: state)
            try directory.writeFile("client.toml", text: text)
            let output = try await Command.run(
                FleetFixture.executable("fleet-client"), ["run", "--config", directory.path("client.toml")])
            #expect(output.exitCode == 1, "\(output.standardError.prefix(500))")
            #expect(
                output.standardError.contains("\(directory.path("client.toml")): [server] key \"address\""),
                "\(output.standardError.prefix(500))")
            #expect(output.standardError.utf8.count < 2000, "the 10 MB value is not echoed")
            #expect(try FileStatus.of(state) == nil, "no state directory was made")
            #expect(try String(contentsOfFile: directory.path("client.toml"), encoding: .utf8) == text)
        }

        let fixture = try FleetFixture(hosts: ["alpha"], serverToml: "address = \"fleet.example.org\\nMatch all\"")
        defer { fixture.remove() }
        let before = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        let output = try await fixture.fleet(["publish"])
        #expect(output.exitCode != 0)
        #expect(output.standardError.contains("fleet.toml: [server] key \"address\""), "\(output.standardError)")
        #expect(try FileStatus.of(try fixture.layout("alpha").directory + "/manifest") == nil, "nothing published")
        #expect(try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8) == before)
    }
}
