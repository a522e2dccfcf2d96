import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Inventory
import Publishing
import Testing

/// Roles: `roles/<name>/` modules given to hosts by fleet.toml, copied into each host's tree with a generated
/// `fleet-roles.nix` importing them in order.
@Suite("Roles")
struct RoleTests {
    /// A fixture whose hosts' fleet.toml tables get the given extra lines (e.g. `roles = ["web"]`).
    func fixture(_ hosts: [String: String], extraToml: String = "", roles: [String] = ["base", "web", "db"]) throws
        -> FleetFixture
    {
        let fixture = try FleetFixture(hosts: hosts.keys.sorted())
        for role in roles {
            try fixture.write("roles/\(role)/default.nix", "{ motd = [ \"role \(role)\" ]; }\n")
        }
        var toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        for (host, lines) in hosts where !lines.isEmpty {
            toml = toml.replacingOccurrences(of: "[hosts.\(host)]\n", with: "[hosts.\(host)]\n\(lines)\n")
        }
        try fixture.write("fleet.toml", toml + extraToml)
        return fixture
    }

    @Test func rolesExpandInImportOrderWithIncludesAndDefaults() throws {
        let fixture = try fixture(
            ["a": "roles = [\"web\"]", "b": "roles = [\"web\", \"base\"]", "c": "", "d": "roles = []"],
            extraToml: "\n[defaults]\nroles = [\"db\"]\n\n[roles.web]\nroles = [\"base\"]\n")
        defer { fixture.remove() }
        let configuration = try fixture.configuration()
        #expect(configuration.host(named: "a")?.roles == ["base", "web"], "included roles come first")
        #expect(configuration.host(named: "b")?.roles == ["base", "web"], "each role once")
        #expect(configuration.host(named: "c")?.roles == ["db"], "[defaults] roles")
        #expect(configuration.host(named: "d")?.roles == [], "a host's own list replaces the default")
        #expect(try configuration.selecting([], roles: ["base"]).map(\.name.value) == ["a", "b"])
        #expect(try configuration.selecting(["a", "c"], roles: ["db"]).map(\.name.value) == ["c"])
        #expect(try configuration.selecting([], roles: ["db", "web"]).map(\.name.value) == ["a", "b", "c"])
        #expect {
            try configuration.selecting([], roles: ["nope"])
        } throws: { error in
            "\(error)".contains("no host has the role \"nope\"") && "\(error)".contains("fleet.toml")
        }
    }

    /// Each hostile setting is refused with a message naming fleet.toml, the host (or role) and the problem.
    @Test(arguments: [
        (
            "roles = [\"missing\"]", "",
            "host a ([hosts.a]): unknown role \"missing\": there is no directory roles/missing/"
        ),
        ("roles = [\"../hosts/b\"]", "", "invalid role name \"../hosts/b\""),
        ("roles = [\"Web\"]", "", "invalid role name \"Web\""),
        ("roles = [\"\"]", "", "invalid role name \"\""),
        ("roles = \"web\"", "", "[hosts.a] key \"roles\": expected an array of strings"),
        ("roles = [1]", "", "[hosts.a] key \"roles\": expected an array of strings"),
        (
            "roles = [\"web\"]", "\n[roles.web]\nroles = [\"db\"]\n[roles.db]\nroles = [\"web\"]\n",
            "host a ([hosts.a] key \"roles\"): the roles include each other in a cycle: web -> db -> web"
        ),
        ("roles = [\"web\"]", "\n[roles.web]\nroles = [\"web\"]\n", "cycle: web -> web"),
        ("", "\n[roles.web]\nimports = [\"db\"]\n", "[roles.web]: unknown key \"imports\""),
        ("", "\n[roles.nothere]\n", "[roles.nothere]: unknown role \"nothere\""),
        ("", "\n[roles.BAD]\n", "[roles.BAD]: invalid role name \"BAD\""),
        ("", "\n[roles.web]\nroles = [\"no/pe\"]\n", "[roles.web] key \"roles\": invalid role name \"no/pe\""),
        ("", "\n[defaults]\nroles = [\"ghost\"]\n", "host a ([defaults]): unknown role \"ghost\""),
    ])
    func hostileRoleSettingsAreRefused(host: String, extra: String, expected: String) throws {
        let fixture = try fixture(["a": host, "b": ""], extraToml: extra)
        defer { fixture.remove() }
        let before = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        #expect {
            try fixture.configuration()
        } throws: { error in
            let text = "\(error)"
            return text.contains(expected) && text.contains(fixture.repository + "/fleet.toml")
        }
        #expect(try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8) == before)
    }

    @Test func topLevelRolesMustBeATable() throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        let toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        try fixture.write("fleet.toml", "roles = [\"web\"]\n" + toml)
        #expect {
            try fixture.configuration()
        } throws: { error in "\(error)".contains("\"roles\" at the top level must be a table of roles") }
    }

    @Test func aHostsTreeGetsItsRolesAndTheModuleImportingThemInOrder() throws {
        let fixture = try fixture(["a": "roles = [\"web\", \"db\"]"], extraToml: "\n[roles.web]\nroles = [\"base\"]\n")
        defer { fixture.remove() }
        try fixture.write("roles/web/nginx/site.conf", "server {}\n")
        // A role directory may be a link inside the repository, like common/.
        try fixture.write("shared/db/default.nix", "{ motd = [ \"db from shared\" ]; }\n")
        try FileIO.removeTree(fixture.repository + "/roles/db")
        try fixture.link("roles/db", to: "../shared/db")
        let host = try #require(try fixture.configuration().host(named: "a"))
        let tree = try HostTreeResolver(repository: fixture.repository).resolve(host)
        let paths = tree.entries.map(\.path)
        for path in [
            "tree/fleet-roles/base/default.nix", "tree/fleet-roles/web/default.nix",
            "tree/fleet-roles/web/nginx/site.conf", "tree/fleet-roles/db/default.nix", "tree/fleet-roles.nix",
        ] {
            #expect(paths.contains(path), "\(path) in \(paths)")
        }
        let module = try #require(tree.entries.first { $0.path == "tree/fleet-roles.nix" })
        guard case .generated(let bytes, let sha256) = module.kind else {
            Issue.record("fleet-roles.nix is not generated: \(module.kind)")
            return
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let imports = text.split(separator: "\n").filter { $0.contains("./fleet-roles/") }.map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        #expect(imports == ["./fleet-roles/base", "./fleet-roles/web", "./fleet-roles/db"], "\(text)")
        #expect(sha256 == SHA256Hasher.hex(bytes) && module.permissions == 0o644)
        #expect(!tree.importsRolesModule, "the fixture's flake.nix does not import it")
        try fixture.write("hosts/a/flake.nix", "{ outputs = { self }: { }; } # imports ./fleet-roles.nix\n")
        #expect(try HostTreeResolver(repository: fixture.repository).resolve(host).importsRolesModule)

        // A host without roles gets neither the directory nor the module.
        let plain = try HostTreeResolver(repository: fixture.repository).resolve(try HostName("a"), roles: [])
        #expect(!plain.entries.contains { $0.path.hasPrefix("tree/fleet-roles") })
    }

    /// Role directories are under the link policy of host trees; fleet's own names in a tree are refused.
    @Test func roleFilesFollowTheLinkPolicyAndFleetsNamesAreReserved() async throws {
        let fixture = try fixture(["a": "roles = [\"web\"]", "b": ""])
        defer { fixture.remove() }
        try fixture.write("secrets/b/token", "hunter2\n")
        let cases: [(setUp: () throws -> Void, expected: String)] = [
            ({ try fixture.link("roles/web/passwd", to: "/etc/passwd") }, "leads outside the fleet repository"),
            ({ try fixture.link("roles/web/peek", to: "../../hosts/b") }, "leads into host b's tree"),
            ({ try fixture.link("roles/web/token", to: "../../secrets/b/token") }, "leads into secrets/"),
            ({ try fixture.link("roles/web/loop", to: "../web") }, "forms a cycle"),
            (
                { try FileIO.removeFile(fixture.repository + "/roles/web/default.nix") },
                "roles/web/default.nix is missing"
            ),
            ({ try fixture.write("hosts/a/fleet-roles.nix", "{ }\n") }, "hosts/a/fleet-roles.nix is where fleet puts"),
            ({ try fixture.write("hosts/a/fleet-roles/x.nix", "{ }\n") }, "hosts/a/fleet-roles is where fleet puts"),
            ({ try FileIO.removeTree(fixture.repository + "/roles/web") }, "unknown role \"web\""),
        ]
        _ = try await fixture.fleet(["publish"])
        let published = try fixture.verifiedManifest("a").generation
        for (setUp, expected) in cases {
            let saved = directory(fixture, "roles") + directory(fixture, "hosts/a")
            try setUp()
            let before = try fixture.chrootListing()
            let output = try await fixture.fleet(["publish"])
            #expect(output.exitCode != 0, "\(expected)")
            #expect(
                (output.standardOutput + output.standardError).contains(expected),
                "\(expected): \(output.standardOutput) \(output.standardError)")
            #expect(try fixture.chrootListing() == before, "nothing published for \(expected)")
            #expect(try fixture.verifiedManifest("a").generation == published)
            try restore(fixture, saved)
        }
    }

    @Test func aRoleEditRepublishesExactlyTheHostsHavingItAndRolesSelectHosts() async throws {
        let fixture = try fixture(
            ["a": "roles = [\"web\"]", "b": "roles = [\"db\"]", "c": ""],
            extraToml: "\n[roles.web]\nroles = [\"base\"]\n")
        defer { fixture.remove() }
        for host in ["a", "b"] {
            try fixture.write(
                "hosts/\(host)/flake.nix",
                "{ outputs = { self }: { modules = [ ./common/base.nix ./fleet-roles.nix ]; }; }\n")
        }
        var output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0 && output.standardOutput.contains("3 published"), "\(output.standardOutput)")
        #expect(!output.standardOutput.contains("none of its .nix files"), "both import it")

        try fixture.write("roles/web/default.nix", "{ motd = [ \"web, edited\" ]; }\n")
        output = try await fixture.fleet(["publish"])
        #expect(try generations(fixture) == ["a": 2, "b": 1, "c": 1], "\(output.standardOutput)")
        try fixture.write("roles/base/default.nix", "{ motd = [ \"base, edited\" ]; }\n")
        _ = try await fixture.fleet(["publish"])
        #expect(try generations(fixture) == ["a": 3, "b": 1, "c": 1], "an included role is the host's role too")

        // --role publishes only the hosts having the role, whatever else changed.
        try fixture.write("roles/web/default.nix", "{ motd = [ \"web, again\" ]; }\n")
        try fixture.write("roles/db/default.nix", "{ motd = [ \"db, edited\" ]; }\n")
        output = try await fixture.fleet(["publish", "--role", "db"])
        #expect(output.exitCode == 0)
        #expect(try generations(fixture) == ["a": 3, "b": 2, "c": 1])
        output = try await fixture.fleet(["publish", "--role", "nope"])
        #expect(output.exitCode != 0 && output.standardError.contains("no host has the role \"nope\""))

        // Giving c a role republishes it, with a warning: its flake does not import fleet-roles.nix.
        let toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        try fixture.write(
            "fleet.toml", toml.replacingOccurrences(of: "[hosts.c]\n", with: "[hosts.c]\nroles = [\"db\"]\n"))
        output = try await fixture.fleet(["publish"])
        #expect(try generations(fixture) == ["a": 4, "b": 2, "c": 2])
        #expect(
            output.standardOutput.contains(
                "hosts/c/ has the roles db but none of its .nix files mentions ./fleet-roles.nix"),
            "\(output.standardOutput)")

        // fleet diff shows the generated module's change like any file's.
        let edited = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        try fixture.write(
            "fleet.toml",
            edited.replacingOccurrences(
                of: "[hosts.c]\nroles = [\"db\"]\n", with: "[hosts.c]\nroles = [\"db\", \"base\"]\n"))
        output = try await fixture.fleet(["diff", "c"])
        #expect(output.standardOutput.contains("tree/fleet-roles.nix"), "\(output.standardOutput)")
        #expect(output.standardOutput.contains("+    ./fleet-roles/base"), "\(output.standardOutput)")
        try fixture.write("fleet.toml", edited)

        // fleet hosts shows roles and selects by them; so does fleet status.
        output = try await fixture.fleet(["hosts", "--role", "base", "--json"])
        let hosts = try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [[String: Any]]
        #expect(hosts?.map { $0["host"] as? String } == ["a"])
        #expect(hosts?.first?["roles"] as? [String] == ["base", "web"])
        output = try await fixture.fleet(["hosts"])
        #expect(output.standardOutput.contains("ROLES") && output.standardOutput.contains("base,web"))
        output = try await fixture.fleet(["status", "--role", "db", "--json"])
        let status = try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any]
        let rows = status?["hosts"] as? [[String: Any]]
        #expect(rows?.map { $0["host"] as? String } == ["b", "c"], "\(output.standardOutput)")
    }

    func generations(_ fixture: FleetFixture) throws -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for host in ["a", "b", "c"] { result[host] = try fixture.verifiedManifest(host).generation }
        return result
    }

    /// A copy of a repository directory (files and links), to put back after a hostile case.
    func directory(_ fixture: FleetFixture, _ relative: String) -> [(String, String?, [UInt8]?)] {
        var items: [(String, String?, [UInt8]?)] = []
        func walk(_ path: String) {
            guard let status = try? FileStatus.of(fixture.repository + "/" + path) else { return }
            switch status.kind {
            case .directory:
                for name in (try? FileIO.listDirectory(fixture.repository + "/" + path)) ?? [] {
                    walk(path + "/" + name)
                }
            case .symbolicLink: items.append((path, try? FileIO.readLink(fixture.repository + "/" + path), nil))
            default: items.append((path, nil, try? FileIO.read(fixture.repository + "/" + path)))
            }
        }
        walk(relative)
        return items
    }

    func restore(_ fixture: FleetFixture, _ items: [(String, String?, [UInt8]?)]) throws {
        for top in ["roles", "hosts/a"] { try FileIO.removeTree(fixture.repository + "/" + top) }
        for (path, link, bytes) in items {
            if let link {
                try fixture.link(path, to: link)
            } else if let bytes {
                try fixture.write(path, String(decoding: bytes, as: UTF8.self))
            }
        }
    }
}
