import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import Inventory
import Testing

/// The NixOS modules (nixos/client.nix, nixos/server.nix) and the root flake.nix that exposes them.
///
/// Nothing here can fetch nixpkgs, so the modules cannot be evaluated into a system. What can be checked
/// offline is: every file parses; the flake, which has no inputs, evaluates; the facts the modules share
/// with the Swift code (nixos/shared.nix, builtins only) agree with it; and the root flake changes nothing
/// that `fleet publish` publishes from this repository's example fleet.
@Suite("NixOS modules and the root flake")
struct NixModulesTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let nixEnvironment = [
        "NIX_CONFIG": [
            "experimental-features = nix-command flakes", "sandbox = false", "substituters =", "warn-dirty = false",
            "build-users-group =",
        ].joined(separator: "\n")
    ]
    static let flakeFiles = ["flake.nix", "flake.lock", "nixos"]

    static func nix(_ executable: String, _ arguments: [String]) async throws -> CommandOutput {
        try await Command.run(executable, arguments, environment: nixEnvironment)
    }

    /// Copies `names` from the repository into `directory`, links as links.
    static func copy(_ names: [String], into directory: String) async throws {
        let output = try await Command.run("cp", ["-a"] + names.map { repository + "/" + $0 } + [directory])
        guard output.succeeded else { throw TestSupportError("cp: \(output.standardError)") }
    }

    @Test func modulesAndFlakeParse() async throws {
        for file in ["flake.nix", "nixos/client.nix", "nixos/server.nix", "nixos/shared.nix"] {
            let output = try await Self.nix("nix-instantiate", ["--parse", Self.repository + "/" + file])
            #expect(output.exitCode == 0, "nix-instantiate --parse \(file):\n\(output.standardError)")
        }
    }

    @Test func theFlakeHasNoInputsAndExposesTheModulesOffline() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try await Self.copy(Self.flakeFiles, into: directory.path)
        let lock = try directory.readFile("flake.lock")
        let flake = "path:" + directory.path
        var output = try await Self.nix(
            "nix", ["eval", "--json", flake + "#nixosModules", "--apply", "builtins.attrNames"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.trimmingWhitespace() == #"["client","default","server"]"#)
        output = try await Self.nix("nix", ["flake", "check", flake])
        #expect(output.exitCode == 0, "nix flake check:\n\(output.standardError)")
        output = try await Self.nix("nix", ["flake", "metadata", "--json", flake])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let metadata = try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any]
        let nodes = (metadata?["locks"] as? [String: Any])?["nodes"] as? [String: Any]
        #expect(nodes?.keys.sorted() == ["root"], "the flake must have no inputs: \(output.standardOutput)")
        #expect(try directory.readFile("flake.lock") == lock, "nix rewrote flake.lock")
    }

    struct SharedFacts: Decodable {
        struct ClientKeys: Decodable {
            let top: [String]
            let tables: [String: [String]]
            let tableArrays: [String: [String]]
        }

        let clientKeys: ClientKeys
        let successExitStatuses: [Int32]
        let pageListenStream: String
        let defaultPollIntervalSeconds: Int
        let defaultRandomizedDelay: String
        let bootDelay: String
        let hostNamePattern: String
        let users: [String]
        let spans: [Bool]
    }

    @Test func theModulesShareTheirFactsWithTheSwiftCode() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let hosts = ["alpha", "web-01", "0", String(repeating: "a", count: 26), String(repeating: "b", count: 63)]
        let spans = [
            "15min", "1h 30min", "1h30min", "90", "1.5h", " 5 min ", "1M", "55s500ms", "0", "15 potatoes", "5secs",
            "5mo", "-1h", "infinity", "1h\nOnCalendar=minutely", "", "1e3s", ".5h",
        ]
        let input = try JSONSerialization.data(withJSONObject: ["hosts": hosts, "spans": spans])
        try directory.writeFile("input.json", Array(input))
        let expression = """
            let
              shared = import \(Self.repository)/nixos/shared.nix;
              input = builtins.fromJSON (builtins.readFile \(directory.path("input.json")));
            in {
              inherit (shared) clientKeys successExitStatuses pageListenStream defaultPollIntervalSeconds defaultRandomizedDelay
                bootDelay hostNamePattern;
              users = map (shared.unixUser "fleet-") input.hosts;
              spans = map shared.isTimeSpan input.spans;
            }
            """
        let output = try await Self.nix("nix-instantiate", ["--eval", "--strict", "--json", "--expr", expression])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let facts = try JSONDecoder().decode(SharedFacts.self, from: Data(output.standardOutput.utf8))

        // client.toml: exactly the keys fleet-client's own renderer writes (every key its parser takes).
        let rendered = ClientConfiguration(
            host: try HostName("alpha"),
            server: .init(
                address: "fleet.example.org", user: "fleet-alpha",
                hostKey: try SSHPublicKey(ClientConfigurationTests.hostKey)),
            fleetPublicKey: try VerifyingKey(nixFormat: try ClientConfigurationTests.fleetKey()), operation: .boot
        ).rendered()
        var table = ""
        var renderedKeys: [String: Set<String>] = [:]
        for line in rendered.split(separator: "\n") where !line.hasPrefix("#") {
            if line.hasPrefix("[") && line.hasSuffix("]") {
                table = String(line.dropFirst().dropLast())
                renderedKeys[table, default: []] = []
            } else if let equals = line.range(of: " = ") {
                renderedKeys[table, default: []].insert(String(line[..<equals.lowerBound]))
            }
        }
        var nixKeys = facts.clientKeys.tables.merging(facts.clientKeys.tableArrays) { $1 }.mapValues(Set.init)
        nixKeys[""] = Set(facts.clientKeys.top + facts.clientKeys.tables.keys + facts.clientKeys.tableArrays.keys)
        let parserKeys = ClientConfiguration.knownKeys.mapValues(Set.init)
        #expect(
            nixKeys == parserKeys,
            """
            nixos/shared.nix clientKeys must list exactly the keys fleet-client's parser accepts \
            (ClientConfiguration.knownKeys), with a typed option each in nixos/client.nix. Parser: \(parserKeys)
            """)
        for (table, keys) in renderedKeys {
            #expect(
                keys.isSubset(of: parserKeys[table] ?? []),
                "the renderer writes keys the parser refuses in [\(table)]: \(keys)")
        }

        #expect(facts.successExitStatuses == SystemdUnits.successExitStatuses)
        #expect(facts.pageListenStream == SystemdUnits.pageListenStream)
        #expect(facts.defaultPollIntervalSeconds == ClientConfiguration.defaultPollIntervalSeconds)
        #expect(facts.defaultRandomizedDelay == SystemdUnits.defaultRandomizedDelay)
        #expect(facts.bootDelay == SystemdUnits.bootDelay)
        #expect("^\(facts.hostNamePattern)$" == HostName.rule)
        #expect(facts.users == (try hosts.map { HostConfiguration.unixUser(for: try HostName($0), prefix: "fleet-") }))
        #expect(facts.users.allSatisfy { $0.count <= 32 })
        for (span, nixAccepts) in zip(spans, facts.spans) {
            #expect(
                nixAccepts == (SystemdUnits.seconds(ofTimeSpan: span) != nil),
                "nixos/shared.nix and install-units disagree on \(String(reflecting: span))")
        }
    }

    @Test func theRootFlakeChangesNothingThatIsPublished() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let repository = directory.path("repo")
        try directory.makeDirectory("repo", mode: 0o755)
        try await Self.copy(["fleet.toml", "hosts", "common"], into: repository)
        try directory.makeDirectory("repo/keys", mode: 0o700)
        for host in ["alpha", "beta", "gamma"] {
            _ = try KeyPair.generate(at: repository + "/keys/" + host, comment: "root@\(host)")
        }
        let environment = ["FLEET_CHROOT_ROOT": directory.path("chroot"), "FLEET_STATE_DIR": directory.path("state")]
        func fleet(_ arguments: [String]) async throws -> CommandOutput {
            try await Command.run(
                FleetFixture.executable("fleet"), arguments + ["--repo", repository], environment: environment)
        }
        var output = try await fleet(["init", "--key-only"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        output = try await fleet(["publish"])
        #expect(output.exitCode == 0 && output.standardOutput.contains("3 published"), "\(output.standardOutput)")

        // The flake and its modules at the root are no host's: publishing again changes nothing.
        try await Self.copy(Self.flakeFiles, into: repository)
        output = try await fleet(["publish"])
        #expect(output.exitCode == 0, "\(output.standardOutput)\(output.standardError)")
        #expect(output.standardOutput.contains("3 unchanged"), "\(output.standardOutput)")
        output = try await fleet(["hosts"])
        #expect(output.exitCode == 0, "\(output.standardError)")
    }
}
