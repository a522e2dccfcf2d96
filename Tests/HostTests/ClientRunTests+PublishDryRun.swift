import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Inventory
import Publishing
import ServerStore
import Testing

/// `fleet publish --dry-run` and `--json` of built hosts: in the client suite, which owns the Nix store.
extension ClientRunTests {
    @Test func dryRunOfABuiltHostSaysItWouldBuildAndJSONShowsThePublishedToplevel() async throws {
        let fixture = try Self.toyFleet(["good", "bad"], extraToml: "[defaults]\nbuild = true")
        defer { fixture.remove() }
        var (status, rows) = try await Self.publishJSON(fixture)
        #expect(status == 0, "\(rows)")
        let published = try #require(try fixture.verifiedManifest("good").toplevel)

        // Unchanged hosts show the system they run, not null.
        (status, rows) = try await Self.publishJSON(fixture)
        let unchanged = try #require(rows.first { $0["host"] as? String == "good" })
        #expect(unchanged["status"] as? String == "unchanged" && unchanged["toplevel"] as? String == published)
        (status, rows) = try await Self.publishJSON(fixture, ["--dry-run"])
        #expect(rows.allSatisfy { $0["toplevel"] is String }, "\(rows)")

        // A change that does not build: no promise of a publish.
        try fixture.write("hosts/bad/configuration.nix", "{ motd = [ (builtins.throw \"bad does not evaluate\") ]; }\n")
        try fixture.write("hosts/good/configuration.nix", "{ motd = [ \"good, edited\" ]; }\n")
        let before = try fixture.chrootListing()
        var output = try await fixture.fleet(["publish", "--dry-run"])
        #expect(output.exitCode == 0, "\(output.standardOutput)\(output.standardError)")
        #expect(!output.standardOutput.contains("would-publish"), "\(output.standardOutput)")
        #expect(output.standardOutput.contains("2 would-build"), "\(output.standardOutput)")
        #expect(output.standardOutput.contains("`fleet publish --dry-run --build` or `fleet build bad`"))

        // --dry-run --build builds now and says which would publish; the chroots are untouched.
        (status, rows) = try await Self.publishJSON(fixture, ["--dry-run", "--build"])
        #expect(status == 1, "a host that would not build fails the dry run as it would fail the publish")
        let bad = try #require(rows.first { $0["host"] as? String == "bad" })
        #expect(bad["status"] as? String == "would-fail" && bad["generation"] as? Int == 1, "\(bad)")
        #expect((bad["reason"] as? String)?.contains("bad does not evaluate") == true, "\(bad)")
        let good = try #require(rows.first { $0["host"] as? String == "good" })
        #expect(good["status"] as? String == "would-publish" && good["generation"] as? Int == 2, "\(good)")
        let next = try #require(good["toplevel"] as? String)
        #expect(next != published && next.hasPrefix("/nix/store/"))
        #expect(try fixture.chrootListing() == before, "a dry run writes nothing into the chroots")

        // Built before (the same tree): a plain dry run knows, and says would-publish with that system.
        output = try await fixture.fleet(["publish", "--dry-run"])
        #expect(output.standardOutput.contains("would-publish") && output.standardOutput.contains(next))
        #expect(output.standardOutput.contains("1 would-publish, 1 would-build"), "\(output.standardOutput)")
    }
}
