import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Testing

/// Roles reach the built system: real Nix builds of toy systems whose flakes import the generated
/// `fleet-roles.nix`. Host names of their own.
@Suite("roles in a built system", .serialized)
struct RoleBuildTests {
    @Test func theBuiltSystemHasItsRolesModulesInOrderAndARoleEditRebuildsOnlyItsHosts() async throws {
        let fixture = try ClientBuildTests.toyFleet(
            ["roleweb", "roleplain"], extraToml: "[defaults]\nbuild = true\n\n[roles.web]\nroles = [\"base\"]\n")
        defer { fixture.remove() }
        try fixture.write("roles/base/default.nix", "{ motd = [ \"role base\" ]; }\n")
        try fixture.write(
            "roles/web/default.nix", "{ motd = [ \"role web\" ]; files.\"nginx.conf\" = \"worker_processes 2;\\n\"; }\n"
        )
        try fixture.write(
            "hosts/roleweb/flake.nix",
            """
            {
              outputs = { self }: {
                nixosConfigurations.roleweb = import ./common/toy-nixos.nix {
                  hostName = "roleweb";
                  modules = [ ./common/base.nix ./fleet-roles.nix ./configuration.nix ];
                };
              };
            }

            """)
        let toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        try fixture.write(
            "fleet.toml",
            toml.replacingOccurrences(of: "[hosts.roleweb]\n", with: "[hosts.roleweb]\nroles = [\"web\"]\n"))

        var (status, rows) = try await ClientBuildTests.publishJSON(fixture)
        #expect(status == 0 && rows.allSatisfy { $0["status"] as? String == "published" }, "\(rows)")
        let toplevel = try #require(try fixture.verifiedManifest("roleweb").toplevel)
        let motd = try String(contentsOfFile: toplevel + "/etc/motd", encoding: .utf8)
        #expect(motd == "shared\nrole base\nrole web\nroleweb\n", "base, then the roles in order, then the host")
        #expect(FileManager.default.fileExists(atPath: toplevel + "/etc/nginx.conf"))
        let plain = try #require(try fixture.verifiedManifest("roleplain").toplevel)
        #expect(try String(contentsOfFile: plain + "/etc/motd", encoding: .utf8) == "shared\nroleplain\n")

        // An edit of an included role rebuilds and republishes the host having it, and only that host.
        try fixture.write("roles/base/default.nix", "{ motd = [ \"role base, edited\" ]; }\n")
        (status, rows) = try await ClientBuildTests.publishJSON(fixture)
        #expect(status == 0)
        let statuses = Dictionary(
            uniqueKeysWithValues: rows.map { ($0["host"] as? String ?? "", $0["status"] as? String) })
        #expect(statuses == ["roleweb": "published", "roleplain": "unchanged"], "\(rows)")
        let rebuilt = try #require(try fixture.verifiedManifest("roleweb").toplevel)
        #expect(try String(contentsOfFile: rebuilt + "/etc/motd", encoding: .utf8).contains("role base, edited"))
    }
}
