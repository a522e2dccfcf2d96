import BuildGate
import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import Inventory
import Publishing
import ServerStore
import Testing

/// The build gate, per-host binary caches, `fleet build` and `fleet diff`, with the real Nix (see
/// ``ClientRunSuite`` for what the client suites share).
@Suite("fleet publish and fleet-client with the build gate, binary caches and real host builds", .serialized)
struct ClientBuildTests: ClientRunSuite {
    /// A real NixOS build logs megabytes. Nix's output goes into the build log as it comes: no size makes a
    /// build that succeeded fail (it was "output exceeded the limit" past 4 MiB), and the log keeps all of it.
    @Test func aBuildThatLogsMegabytesStillBuildsAndItsLogKeepsEverything() async throws {
        let fixture = try Self.toyFleet(["chatty"], extraToml: "[defaults]\nbuild = true")
        defer { fixture.remove() }
        try fixture.write(
            "hosts/chatty/flake.nix",
            ToySystem.flake(
                host: "chatty", name: "toy",
                script: """
                    /usr/bin/seq 1 150000 | /bin/sed 's/^/a chatty build says line /' >&2
                    echo "the last line of the chatty build" >&2
                    """))
        let (status, rows) = try await Self.publishJSON(fixture)
        #expect(status == 0 && rows.first?["status"] as? String == "published", "\(rows)")
        let log = try #require(rows.first?["buildLog"] as? String, "\(rows)")
        let size = try #require(try FileStatus.of(log)).size
        #expect(size > 5 << 20, "the whole log is kept: \(size) bytes")
        let tail = String(decoding: try FileIO.read(log, limit: 64 << 20).suffix(4096), as: UTF8.self)
        #expect(tail.contains("the last line of the chatty build") && tail.contains("(exit status 0)"))
    }

    @Test func aHostThatDoesNotBuildKeepsItsGenerationWhileTheOthersAdvance() async throws {
        let fixture = try Self.toyFleet(["good", "bad"], extraToml: "[defaults]\nbuild = true")
        defer { fixture.remove() }
        var (status, rows) = try await Self.publishJSON(fixture)
        #expect(status == 0 && rows.allSatisfy { $0["status"] as? String == "published" }, "\(rows)")
        for host in ["good", "bad"] {
            let manifest = try fixture.verifiedManifest(host)
            let toplevel = try #require(manifest.toplevel)
            #expect(toplevel.hasSuffix("nixos-system-\(host)-toy") && !manifest.hasCache)
        }

        try fixture.write("hosts/bad/configuration.nix", "{ motd = [ (builtins.throw \"bad does not evaluate\") ]; }\n")
        try fixture.write("common/base.nix", "{ motd = [ \"shared, edited\" ]; }\n")
        (status, rows) = try await Self.publishJSON(fixture)
        #expect(status == 1, "a host that did not build fails the publish")
        let bad = try #require(rows.first { $0["host"] as? String == "bad" })
        #expect(bad["status"] as? String == "build-failed" && bad["generation"] as? Int == 1)
        #expect((bad["reason"] as? String)?.contains("bad does not evaluate") == true, "\(bad)")
        let log = try #require(bad["buildLog"] as? String)
        #expect(String(decoding: try FileIO.read(log), as: UTF8.self).contains("bad does not evaluate"))
        #expect(try fixture.verifiedManifest("bad").generation == 1)
        #expect(try fixture.verifiedManifest("good").generation == 2)
        let store = try StateStoreOpener.open(fixture)
        #expect(try store.events(host: try HostName("bad")).contains { $0.kind == "build-failed" })

        // The secrets never reach the server's Nix store either: builds use a copy without them.
        let nixStore = try NixStoreEntries()
        try fixture.write("secrets/good/token", "SECRET-\(UUID().uuidString)\n", mode: 0o600)
        try fixture.write("hosts/good/configuration.nix", "{ motd = [ \"good, third\" ]; }\n")
        (status, rows) = try await Self.publishJSON(fixture, ["good"])
        #expect(status == 0)
        let token = try String(contentsOfFile: fixture.repository + "/secrets/good/token", encoding: .utf8)
        // A path holding the new secret would be a new path (a rerun's build makes none: same content, same paths).
        let found = try nixStore.filesHolding([token.trimmingCharacters(in: .newlines)])
        #expect(found.isEmpty, "a secret is in the Nix store: \(found)")
    }

    @Test func fleetBuildReusesATreeBuiltBeforeAndDiffShowsWhatWouldChange() async throws {
        let fixture = try Self.toyFleet(["alpha"], extraToml: "")
        defer { fixture.remove() }
        try fixture.write("secrets/alpha/token", "OLD-SECRET-VALUE\n", mode: 0o600)
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        var output = try await fixture.fleet(["build", "--json"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("\"status\" : \"built\""))
        output = try await fixture.fleet(["build", "--json"])
        #expect(output.standardOutput.contains("\"status\" : \"reused\""))

        try fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"alpha, edited\" ]; }\n")
        try fixture.write("hosts/alpha/new.nix", "{ }\n")
        try fixture.write("secrets/alpha/token", "NEW-SECRET-VALUE\n", mode: 0o600)
        output = try await fixture.fleet(["diff", "alpha"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let text = output.standardOutput
        #expect(text.contains("changed  tree/configuration.nix") && text.contains("added    tree/new.nix"))
        #expect(text.contains("+{ motd = [ \"alpha, edited\" ]; }"), "a unified diff of the text file")
        #expect(text.contains("changed  secrets/token   (secret: content not shown)"))
        #expect(!text.contains("SECRET-VALUE"), "a secret's content is never shown")
        #expect(text.contains("the published generation was not built on the server"))
        output = try await fixture.fleet(["diff", "alpha", "--json"])
        #expect(!output.standardOutput.contains("SECRET-VALUE") && output.standardOutput.contains("tree/new.nix"))

        // Built on both sides: the closure difference.
        output = try await fixture.fleet(["publish", "--build"])
        #expect(output.exitCode == 0, "\(output.standardOutput)\(output.standardError)")
        let published = try #require(try fixture.verifiedManifest("alpha").toplevel, "\(output.standardOutput)")
        try fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"alpha, third\" ]; }\n")
        output = try await fixture.fleet(["diff", "alpha"])
        #expect(output.standardOutput.contains("the current tree is not built yet; `fleet build alpha` builds it"))
        #expect(try await fixture.fleet(["build", "alpha"]).exitCode == 0)
        output = try await fixture.fleet(["diff", "alpha"])
        #expect(output.standardOutput.contains("closure: \(published) -> /nix/store/"), "\(output.standardOutput)")
    }

    /// The host is named for this test alone: its system is removed from the Nix store, which must not be one
    /// that another suite running at the same time holds (as every suite's "alpha" would be).
    @Test func aCachedHostAppliesWithoutEvaluatingAndEachCacheHoldsOnlyItsHost() async throws {
        let fleet = try await ClientFleet.start(hosts: ["cached", "beta"]) { fixture in
            try fixture.write(
                "fleet.toml",
                try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                    + "\n[defaults]\ncache = true\n")
        }
        defer { fleet.stop() }
        let alpha = try fleet.manifest("cached")
        let toplevel = try #require(alpha.toplevel)
        #expect(alpha.hasCache)
        let alphaCache = BinaryCache(directory: try fleet.layout("cached").cache).storePathHashes()
        let betaCache = BinaryCache(directory: try fleet.layout("beta").cache).storePathHashes()
        #expect(alphaCache.contains(String(toplevel.dropFirst("/nix/store/".count).prefix(32))))
        #expect(alphaCache.isDisjoint(with: betaCache), "beta's cache holds none of alpha's paths")
        let narinfo = try CacheEntryFiles.narinfo(
            CacheEntryFiles.path(in: try fleet.layout("cached").cache, of: toplevel))
        #expect(narinfo.contains("Sig: test-fleet-1:"), "signed with the fleet key")

        // The host does not have the system: it must come from the cache, since nothing is evaluated.
        try Self.forget(toplevel, fleet: fleet)
        let output = try await fleet.client("cached")
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(output.standardError.contains("substituting \(toplevel) from the fleet's binary cache"))
        #expect(!output.standardError.contains("building nixosConfigurations"))
        let report = try #require(try fleet.lastReport("cached"))
        let log = String(decoding: try FileIO.read(try fleet.layout("cached").logs + "/" + report.log!), as: UTF8.self)
        #expect(!log.contains(" build path:") && log.contains("nix-store --realise"))
        #expect(try fleet.state("cached").applied?.system == toplevel)
        #expect(try FileStatus.of(toplevel) != nil)
        #expect(FileManager.default.fileExists(atPath: fleet.stateDirectory("cached") + "/cache/nix-cache-info"))
    }

    @Test func aCacheWithABadSignatureIsRefusedAndNothingIsBuilt() async throws {
        let fleet = try await ClientFleet.start(hosts: ["forged"]) { fixture in
            try fixture.write(
                "fleet.toml",
                try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                    + "\n[defaults]\ncache = true\n")
        }
        defer { fleet.stop() }
        let toplevel = try #require(try fleet.manifest("forged").toplevel)
        try Self.forgeSignature(ofEntry: CacheEntryFiles.path(in: try fleet.layout("forged").cache, of: toplevel))
        try Self.forget(toplevel, fleet: fleet)

        let output = try await fleet.client("forged")
        #expect(output.exitCode == Self.failed, "\(output.standardError)")
        #expect(output.standardError.contains("substitution failed"))
        #expect(try FileStatus.of(toplevel) == nil, "neither substituted nor built")
        #expect(fleet.activations("forged").isEmpty)
        #expect(try fleet.profileGeneration("forged") == nil)
    }

    @Test func cacheFilesNoPublishedGenerationNeedsAreCollected() async throws {
        let fixture = try Self.toyFleet(["alpha"], extraToml: "[defaults]\ncache = true")
        defer { fixture.remove() }
        try fixture.write(
            "fleet.toml",
            try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                .replacingOccurrences(of: "[server]\n", with: "[server]\nsnapshot_grace_seconds = 0\n"))
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let first = try #require(try fixture.verifiedManifest("alpha").toplevel)
        let cache = BinaryCache(directory: try fixture.layout("alpha").cache)
        #expect(cache.storePathHashes() == [String(first.dropFirst(11).prefix(32))])
        try fixture.write("hosts/alpha/configuration.nix", "{ motd = [ \"second\" ]; }\n")
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let second = try #require(try fixture.verifiedManifest("alpha").toplevel)
        #expect(first != second)
        // The first snapshot goes once its grace period (0 s, counted in whole seconds from the second's
        // mtime) has passed, at the next publish; its system's cache files go with it, not before.
        let snapshots = try fixture.layout("alpha").snapshots
        if try FileStatus.of(snapshots + "/1.tar.zst") != nil {
            #expect(cache.storePathHashes().count == 2, "a served generation keeps its cache files")
        }
        // A publish 2 s later by fleet's clock (WallClock), instead of waiting for the grace period to pass.
        #expect(
            try await fixture.fleet(["publish"], environment: ["FLEET_TEST_CLOCK_OFFSET_SECONDS": "2"]).exitCode == 0)
        #expect(try FileStatus.of(snapshots + "/1.tar.zst") == nil)
        #expect(
            cache.storePathHashes() == [String(second.dropFirst(11).prefix(32))],
            "the first system's files went with its snapshot")
        #expect(try FileIO.listDirectory(cache.directory) == [String(second.dropFirst(11).prefix(32))])
    }

    @Test func publishGivesTheHooksPublishedAndBuildFailedEvents() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let received = directory.path("events.jsonl")
        let fixture = try Self.toyFleet(
            ["good", "bad"],
            extraToml: """
                [defaults]
                build = true

                [[hooks]]
                command = ["/bin/sh", "-c", "cat >> \(received)"]
                events = ["published", "build-failed"]
                """)
        defer { fixture.remove() }
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        try fixture.write("hosts/bad/configuration.nix", "{ motd = [ (builtins.throw \"no\") ]; }\n")
        try fixture.write("hosts/good/configuration.nix", "{ motd = [ \"good, second\" ]; }\n")
        #expect(try await fixture.fleet(["publish"]).exitCode == 1)
        let lines = try String(contentsOfFile: received, encoding: .utf8).split(separator: "\n")
        let events = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] ?? [:] }
        let summary = events.map {
            "\($0["event"] as? String ?? "?") \($0["host"] as? String ?? "?") \($0["generation"] as? Int ?? -1)"
        }
        #expect(
            summary.sorted() == ["build-failed bad 1", "published bad 1", "published good 1", "published good 2"],
            "\(summary)")
        let failed = try #require(events.first { $0["event"] as? String == "build-failed" })
        #expect((failed["reason"] as? String)?.contains("did not build") == true)
    }

}

/// Opens a fixture's state.db.
enum StateStoreOpener {
    static func open(_ fixture: FleetFixture) throws -> ServerStore.StateStore {
        try ServerStore.StateStore(stateDirectory: fixture.stateDirectory)
    }
}

extension ClientRunSuite {
    /// A repository of toy flake hosts, without sshd: what the server side needs.
    static func toyFleet(_ hosts: [String], extraToml: String) throws -> FleetFixture {
        let fixture = try FleetFixture(hosts: [], extraToml: "")
        try fixture.write("common/toy-nixos.nix", ClientFleet.toyNixOS)
        var toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8) + extraToml + "\n"
        for host in hosts {
            try ClientFleet.addToyHost(host, to: fixture)
            toml += "[hosts.\(host)]\nkey = \"\(KeyPair.publicLine(forHost: host))\"\n"
        }
        try fixture.write("fleet.toml", toml)
        return fixture
    }

    static func publishJSON(_ fixture: FleetFixture, _ arguments: [String] = []) async throws -> (
        Int32, [[String: Any]]
    ) {
        let output = try await fixture.fleet(["publish", "--json"] + arguments)
        let rows = try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [[String: Any]]
        return (output.exitCode, rows ?? [])
    }

    /// Signs the narinfo with a stranger's key instead of the fleet's, replacing it by rename (so the pool's
    /// file, which it links, stays as it was); returns the forged text.
    @discardableResult
    static func forgeSignature(ofEntry entry: String) throws -> String {
        let signature = try SigningKey(generatingWithName: "stranger-1").sign(Array("forged".utf8))
        var forged = ""
        try CacheEntryFiles.rewrite(entry) { narinfo in
            forged =
                narinfo.split(separator: "\n").map { line in
                    line.hasPrefix("Sig: ") ? "Sig: " + signature : String(line)
                }.joined(separator: "\n") + "\n"
            return forged
        }
        return forged
    }

    /// The store paths of `toplevel`'s closure, as the (shared) Nix store has them.
    static func storeClosure(of toplevel: String) throws -> [String] {
        let output = try TestCommand.run("/usr/bin/nix-store", ["--query", "--requisites", toplevel])
        guard output.succeeded else { throw TestSupportError("nix-store -qR \(toplevel): \(output.standardError)") }
        return output.standardOutput.split(separator: "\n").map(String.init)
    }

    /// Removes a system from the Nix store (and the server's build roots for it), as if this host never had it.
    static func forget(_ toplevel: String, fleet: ClientFleet) throws {
        let builds = fleet.fixture.stateDirectory + "/builds"
        for host in (try? FileIO.listDirectory(builds)) ?? [] {
            for name in (try? FileIO.listDirectory(builds + "/" + host)) ?? [] where name.hasPrefix("result-") {
                unlink(builds + "/" + host + "/" + name)
            }
        }
        let output = try TestCommand.run("/usr/bin/nix-store", ["--delete", toplevel])
        guard output.succeeded, try FileStatus.of(toplevel) == nil else {
            throw TestSupportError("could not remove \(toplevel) from the store: \(output.standardError)")
        }
    }
}
