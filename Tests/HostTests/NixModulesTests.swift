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
/// offline is: every file parses; the flake evaluates with a stand-in nixpkgs (nix/test/); client.nix, evaluated
/// with stand-ins (nix/test/evaluate-client.nix), declares the units it should, and the page's unit is rated
/// by `systemd-analyze security`; the facts the modules share with the Swift code (nixos/shared.nix, builtins
/// only) agree with it; and the root flake changes nothing that `fleet publish` publishes from this
/// repository's example fleet.
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
    static let flakeFiles = ["flake.nix", "flake.lock", "nixos", "nix"]

    static func nix(_ executable: String, _ arguments: [String]) async throws -> CommandOutput {
        try await Command.run(executable, arguments, environment: nixEnvironment)
    }

    /// Copies `names` from the repository into `directory`, links as links.
    static func copy(_ names: [String], into directory: String) async throws {
        let output = try await Command.run("cp", ["-a"] + names.map { repository + "/" + $0 } + [directory])
        guard output.succeeded else { throw TestSupportError("cp: \(output.standardError)") }
    }

    @Test func modulesAndFlakeParse() async throws {
        for file in [
            "flake.nix", "nixos/client.nix", "nixos/server.nix", "nixos/shared.nix", "nix/package.nix",
            "nix/swiftpm/default.nix", "nix/test/stand-in-lib.nix", "nix/test/stand-in-pkgs.nix", "nix/test/flake.nix",
            "nix/test/evaluate-client.nix",
        ] {
            let output = try await Self.nix("nix-instantiate", ["--parse", Self.repository + "/" + file])
            #expect(output.exitCode == 0, "nix-instantiate --parse \(file):\n\(output.standardError)")
        }
    }

    /// The flake's one input is nixpkgs, for `packages` only; with nix/test's stand-in in its place it evaluates
    /// offline, and flake.lock (which cannot pin nixpkgs here) is left as it is.
    @Test func theFlakeExposesModulesOverlayAndPackagesWithAStandInNixpkgs() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.makeDirectory("flake")
        try directory.makeDirectory("stand-in")
        try await Self.copy(Self.flakeFiles, into: directory.path("flake"))
        try await Self.copy(
            ["nix/test/flake.nix", "nix/test/stand-in-lib.nix", "nix/test/stand-in-pkgs.nix"],
            into: directory.path("stand-in"))
        let lock = try directory.readFile("flake/flake.lock")
        let flake = "path:" + directory.path("flake")
        let override = ["--no-write-lock-file", "--override-input", "nixpkgs", "path:" + directory.path("stand-in")]
        func evaluate(_ attribute: String, _ apply: String) async throws -> String {
            let output = try await Self.nix(
                "nix", ["eval", "--json", flake + "#" + attribute, "--apply", apply] + override)
            #expect(output.exitCode == 0, "nix eval \(attribute):\n\(output.standardError)")
            return output.standardOutput.trimmingWhitespace()
        }
        #expect(try await evaluate("nixosModules", "builtins.attrNames") == #"["client","default","server"]"#)
        #expect(try await evaluate("overlays.default", "builtins.isFunction") == "true")
        #expect(try await evaluate("packages", "builtins.attrNames") == #"["aarch64-linux","x86_64-linux"]"#)
        #expect(
            try await evaluate(
                "packages.x86_64-linux", "p: builtins.mapAttrs (_: d: [ d.pname d.outputName ]) p")
                == #"{"default":["fleet","out"],"fleet":["fleet","out"],"fleet-client":["fleet","client"]}"#)
        let output = try await Self.nix("nix", ["flake", "metadata", "--json", flake] + override)
        #expect(output.exitCode == 0, "\(output.standardError)")
        let metadata = try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any]
        let nodes = (metadata?["locks"] as? [String: Any])?["nodes"] as? [String: Any]
        #expect(
            nodes?.keys.sorted() == ["nixpkgs", "root"], "the flake's one input is nixpkgs: \(output.standardOutput)")
        #expect(try directory.readFile("flake/flake.lock") == lock, "nix rewrote flake.lock")
    }

    /// What nix/test/evaluate-client.nix returns: the units client.nix declares, rendered, and facts.
    struct ClientEvaluation: Decodable {
        let units: [String: String]
        let polkit: Polkit
        let pageEnabled: Bool
        let package: String

        struct Polkit: Decodable {
            let enable: Bool?
            let extraConfig: String?
        }

        /// The values of `key=` in `unit`, in order.
        func values(_ key: String, in unit: String) -> [String] {
            (units[unit] ?? "").split(separator: "\n").compactMap { line in
                line.hasPrefix(key + "=") ? String(line.dropFirst(key.count + 1)) : nil
            }
        }
    }

    static var clientSettings: [String: Any] {
        [
            "enable": true,
            "settings": [
                "fleet_public_key": "fleet-1:Qx8pB0Yh0dXzD3kpX3tN9tQm4w6F8M1Jk0s2o8Vb2bU=",
                "server": ["address": "fleet.example.org", "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 root@fleet"],
            ],
        ]
    }

    /// Evaluates nixos/client.nix with `client` as services.fleet-client; `server`: services.fleet-server.enable
    /// (nil: the server module is not imported).
    static func evaluateClient(
        _ client: [String: Any] = clientSettings, server: Bool? = nil, proxy: [String: String] = [:],
        in directory: TestDirectory
    ) async throws -> ClientEvaluation {
        try directory.writeFile("client.json", Array(try JSONSerialization.data(withJSONObject: client)))
        try directory.writeFile("proxy.json", Array(try JSONSerialization.data(withJSONObject: proxy)))
        var arguments = [
            "--eval", "--strict", "--json", repository + "/nix/test/evaluate-client.nix",
            "--arg", "client", "builtins.fromJSON (builtins.readFile \(directory.path("client.json")))",
            "--arg", "proxy", "builtins.fromJSON (builtins.readFile \(directory.path("proxy.json")))",
        ]
        if let server { arguments += ["--arg", "server", server ? "true" : "false"] }
        let output = try await nix("nix-instantiate", arguments)
        guard output.exitCode == 0 else {
            throw TestSupportError("evaluating nixos/client.nix:\n\(output.standardError)")
        }
        return try JSONDecoder().decode(ClientEvaluation.self, from: Data(output.standardOutput.utf8))
    }

    /// The run unit gets what NixOS gives its own upgrade unit (nixos-upgrade.service): Nix, git, ssh, tar, xz,
    /// gzip on PATH and networking.proxy's variables; and no activation may restart or stop it.
    @Test func theRunUnitHasTheUpgradeUnitsEnvironmentAndSurvivesActivations() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let proxy = ["http_proxy": "http://proxy.example.org:3128", "no_proxy": "127.0.0.1,localhost"]
        let evaluation = try await Self.evaluateClient(proxy: proxy, in: directory)
        let unit = "fleet-client.service"
        let environment = evaluation.values("Environment", in: unit)
        let path = environment.first { $0.hasPrefix("\"PATH=") } ?? ""
        let directories = path.dropFirst("\"PATH=".count).dropLast().split(separator: ":").map(String.init)
        for package in ["coreutils", "gnutar", "xz-bin", "gzip", "git-minimal", "nix", "openssh"] {
            #expect(
                directories.contains { $0.hasSuffix("-" + package + "/bin") }, "PATH lacks \(package): \(path)")
        }
        #expect(environment.contains(#""http_proxy=http://proxy.example.org:3128""#), "\(environment)")
        #expect(environment.contains(#""no_proxy=127.0.0.1,localhost""#), "\(environment)")
        #expect(evaluation.values("X-RestartIfChanged", in: unit) == ["false"])
        #expect(evaluation.values("X-StopOnRemoval", in: unit) == ["false"])
        #expect(evaluation.values("Type", in: unit) == ["oneshot"])
        #expect(evaluation.package.hasSuffix("-fleet-client"), "the overlay's pkgs.fleet-client: \(evaluation.package)")
    }

    /// The page runs as a dynamic user in a sandbox `systemd-analyze security` rates 2.0 or less, may start
    /// fleet-client.service and nothing else, and starts it with systemctl instead of running it.
    ///
    /// Measured offline (`--offline=true` on the unit file the module renders, systemd 252): the rating reads the
    /// unit's settings; a live one on NixOS also sees the drop-ins NixOS adds, and polkit is not rated at all.
    @Test func thePageIsSandboxedWithAnExposureOfAtMostTwo() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let evaluation = try await Self.evaluateClient(in: directory)
        let unit = "fleet-client-page.service"
        let text = try #require(evaluation.units[unit], "no \(unit): \(evaluation.units.keys.sorted())")
        try directory.writeFile(unit, text: text)
        let output = try await Command.run(
            "systemd-analyze", ["security", "--offline=true", "--no-pager", directory.path(unit)])
        #expect(output.exitCode == 0, "systemd-analyze security:\n\(output.standardError)")
        let marker = "Overall exposure level for \(unit): "
        let line = output.standardOutput.split(separator: "\n").first { $0.contains(marker) }
        let exposure = line.flatMap { Double($0.components(separatedBy: marker)[1].split(separator: " ")[0]) }
        let measured = try #require(exposure, "no exposure in:\n\(output.standardOutput)")
        #expect(measured <= 2.0, "exposure \(measured):\n\(output.standardOutput)")

        #expect(evaluation.values("DynamicUser", in: unit) == ["true"])
        #expect(evaluation.values("User", in: unit) == ["fleet-client-page"])
        #expect(evaluation.values("KillMode", in: unit) == [], "the page runs no activation")
        #expect(evaluation.values("X-RestartIfChanged", in: unit) == [])
        let start = try #require(evaluation.values("ExecStart", in: unit).first)
        #expect(
            start.hasSuffix(
                #" serve --config /etc/fleet/client.toml --start-command "/nix/store/00000000000000000000000000000000-systemd/bin/systemctl start --no-block fleet-client.service""#
            ),
            "\(start)")
        #expect(evaluation.values("ListenStream", in: "fleet-client-page.socket") == ["127.0.0.1:9999"])
        #expect(evaluation.values("Accept", in: "fleet-client-page.socket") == ["false"])
        #expect(evaluation.polkit.enable == true)
        let rule = evaluation.polkit.extraConfig ?? ""
        for condition in [
            #"action.id == "org.freedesktop.systemd1.manage-units""#,
            #"action.lookup("unit") == "fleet-client.service""#,
            #"action.lookup("verb") == "start""#, #"subject.user == "fleet-client-page""#,
        ] {
            #expect(rule.contains(condition), "the polkit rule lacks \(condition):\n\(rule)")
        }
    }

    /// The page is off by default where services.fleet-server is on, and then leaves neither units nor a
    /// polkit rule; it works with or without the server module imported.
    @Test func thePageIsOffByDefaultOnTheServerAndCanBeTurnedOff() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let page = ["fleet-client-page.service", "fleet-client-page.socket"]
        for (server, enabled) in [(nil, true), (false, true), (true, false)] as [(Bool?, Bool)] {
            let evaluation = try await Self.evaluateClient(server: server, in: directory)
            #expect(evaluation.pageEnabled == enabled, "fleet-server \(String(describing: server))")
            #expect(page.allSatisfy { (evaluation.units[$0] != nil) == enabled }, "\(evaluation.units.keys.sorted())")
            #expect((evaluation.polkit.extraConfig != nil) == enabled)
            #expect(evaluation.units["fleet-client.service"] != nil && evaluation.units["fleet-client.timer"] != nil)
        }
        var client = Self.clientSettings
        client["page"] = ["enable": false]
        let evaluation = try await Self.evaluateClient(client, in: directory)
        #expect(!evaluation.pageEnabled && page.allSatisfy { evaluation.units[$0] == nil })
        #expect(evaluation.polkit.enable == nil && evaluation.polkit.extraConfig == nil)
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
        try await Self.copy(["fleet.toml", "hosts", "common", "roles"], into: repository)
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
