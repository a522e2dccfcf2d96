import FleetProtocol
import Foundation
import Testing

/// client.toml's `[[servers]]`: mirrors parse and render back the same, and every hostile value is refused by
/// name, with the whole file refused (nothing half-read is used).
@Suite("client.toml mirrors ([[servers]])")
struct ClientConfigurationMirrorsTests {
    static let serverKey =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@server"
    static let mirrorKey =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILTEF70tWzpxhFn+ak9N9dF5yoLScet3pjErEXYg9/X root@mirror"

    static func base() throws -> String {
        let fleetKey = try SigningKey(generatingWithName: "fleet-1").publicKey.nixFormat
        return """
            host = "alpha"
            fleet_public_key = "\(fleetKey)"
            [server]
            address = "fleet.example.org"
            user = "fleet-alpha"
            host_key = "\(serverKey)"

            """
    }

    static func mirror(_ name: String, address: String = "mirror.example.org", port: Int = 22, key: String = mirrorKey)
        -> String
    {
        "[[servers]]\nname = \"\(name)\"\naddress = \"\(address)\"\nport = \(port)\nhost_key = \"\(key)\"\n"
    }

    static func problems(_ text: String) throws -> [String] {
        let error = try #require(throws: ConfigurationError.self) {
            try ClientConfiguration.parse(text, file: "/etc/fleet/client.toml")
        }
        #expect(error.problems.allSatisfy { $0.hasPrefix("/etc/fleet/client.toml") }, "\(error.problems)")
        return error.problems
    }

    @Test func mirrorsParseInOrderAndRenderBackTheSame() throws {
        let text =
            try Self.base() + Self.mirror("mirror-a", address: "192.0.2.7", port: 2222)
            + Self.mirror("b", address: "mirror-b.example.org")
        let parsed = try ClientConfiguration.parse(text, file: "client.toml")
        #expect(parsed.mirrors.map(\.name) == ["mirror-a", "b"])
        #expect(parsed.mirrors[0].address == "192.0.2.7" && parsed.mirrors[0].port == 2222)
        #expect(parsed.mirrors[1].port == 22, "the default port")
        #expect(parsed.mirrors[1].hostKey.description == Self.mirrorKey)
        let rendered = parsed.rendered()
        #expect(rendered.contains("[[servers]]\nname = \"mirror-a\""), "\(rendered)")
        #expect(try ClientConfiguration.parse(rendered, file: "client.toml") == parsed)
    }

    @Test func withoutMirrorsTheListIsEmptyAndTheRenderedFileShowsHowToAddOne() throws {
        let parsed = try ClientConfiguration.parse(try Self.base(), file: "client.toml")
        #expect(parsed.mirrors.isEmpty)
        let rendered = parsed.rendered()
        #expect(rendered.contains("# [[servers]]") && !rendered.contains("\n[[servers]]"), "\(rendered)")
        #expect(try ClientConfiguration.parse(rendered, file: "client.toml") == parsed)
        // What the NixOS module renders for an empty list.
        #expect(try ClientConfiguration.parse("servers = []\n" + Self.base(), file: "c").mirrors.isEmpty)
    }

    @Test(arguments: [
        ("Mirror-A", "is not a server name"), ("", "is not a server name"), ("-a", "is not a server name"),
        ("a b", "is not a server name"), ("a\nb", "is not a server name"), ("../etc", "is not a server name"),
        (String(repeating: "a", count: 64), "is not a server name"),
        (String(repeating: "x", count: 300), "… (300 bytes)"), ("primary", "\"primary\" is reserved"),
    ])
    func badNamesAreRefused(name: String, expected: String) throws {
        let escaped = name.replacingOccurrences(of: "\n", with: "\\n")
        let problems = try Self.problems(try Self.base() + Self.mirror(escaped))
        #expect(
            problems.contains { $0.contains("[[servers]] #1 key \"name\"") && $0.contains(expected) }, "\(problems)")
        #expect(problems.allSatisfy { $0.utf8.count < 600 }, "a hostile name is not echoed whole")
    }

    @Test func duplicateNamesAndAddressesAreRefused() throws {
        var problems = try Self.problems(
            try Self.base() + Self.mirror("a", address: "one.example.org")
                + Self.mirror("a", address: "two.example.org"))
        #expect(
            problems.contains { $0.contains("[[servers]] #2 key \"name\": \"a\" is the name of an earlier mirror") })
        problems = try Self.problems(try Self.base() + Self.mirror("a") + Self.mirror("b"))
        #expect(problems.contains { $0.contains("[[servers]] #2 (b): mirror.example.org port 22 is already") })
        problems = try Self.problems(try Self.base() + Self.mirror("a", address: "FLEET.example.org"))
        #expect(problems.contains { $0.contains("is already [server]'s address and port") }, "\(problems)")
    }

    @Test func badAddressesPortsAndKeysAreRefused() throws {
        let cases: [(String, String)] = [
            (Self.mirror("a", address: "evil host\\nProxyCommand x"), "key \"address\""),
            (Self.mirror("a", address: "[::1]"), "key \"address\""),
            (Self.mirror("a", port: 0), "key \"port\": expected an integer in 1...65535"),
            (Self.mirror("a", port: 65536), "key \"port\": expected an integer in 1...65535"),
            (Self.mirror("a", port: -22), "key \"port\""),
            (Self.mirror("a", key: "ssh-ed25519 AAAA"), "key \"host_key\""),
            (Self.mirror("a", key: "ssh-dss AAAAB3NzaC1kc3MAAACBAP"), "key \"host_key\""),
            (Self.mirror("a", key: "\(Self.mirrorKey)\\n\(Self.serverKey)"), "more than one line"),
            ("[[servers]]\nname = \"a\"\n", "the key \"address\" is required"),
            ("[[servers]]\nname = \"a\"\naddress = \"m.example.org\"\n", "the key \"host_key\" is required"),
            ("[[servers]]\naddress = \"m.example.org\"\nhost_key = \"\(Self.mirrorKey)\"\n", "\"name\" is required"),
            ("[[servers]]\nname = 7\n", "expected a string"),
            (Self.mirror("a") + "user = \"root\"\n", "unknown key \"user\""),
            ("servers = \"mirror.example.org\"\n", "must be an array of tables"),
            ("servers = [1]\n", "#1 must be a table"),
        ]
        for (toml, expected) in cases {
            // Top-level keys go before [server]; tables after it.
            let text = toml.hasPrefix("servers =") ? toml + (try Self.base()) : (try Self.base()) + toml
            let problems = try Self.problems(text)
            #expect(problems.contains { $0.contains(expected) }, "\(toml): \(problems)")
        }
    }

    @Test func moreThanSixteenMirrorsAreRefused() throws {
        let sixteen = (1...16).map { Self.mirror("m\($0)", address: "m\($0).example.org") }.joined()
        #expect(try ClientConfiguration.parse(try Self.base() + sixteen, file: "c").mirrors.count == 16)
        let problems = try Self.problems(try Self.base() + sixteen + Self.mirror("m17", address: "m17.example.org"))
        #expect(problems.contains { $0.contains("17 mirrors, at most 16 are allowed") }, "\(problems)")
    }

    @Test func aRenderedHostileValueStaysInsideItsString() throws {
        // Built in code (as `fleet client-config` does), so not validated: rendering must still be one TOML string,
        // and parsing it back refuses it rather than reading a second key.
        var configuration = try ClientConfiguration.parse(try Self.base(), file: "c")
        configuration.mirrors = [
            .init(name: "x\"\nuser = \"root", address: "m.example.org", hostKey: try SSHPublicKey(Self.mirrorKey))
        ]
        let problems = try Self.problems(configuration.rendered())
        #expect(problems.contains { $0.contains("key \"name\"") } && !problems.contains { $0.contains("\"user\"") })
    }
}
