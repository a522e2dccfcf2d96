import ArchiveKit
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import Inventory
import Publishing
import ServerStore
import Testing

@Suite("Host tree resolution")
struct HostTreeResolverTests {
    func resolve(_ fixture: FleetFixture, _ host: String) throws -> ResolvedTree {
        try HostTreeResolver(repository: fixture.repository).resolve(try HostName(host), roles: [])
    }

    /// Resolves `host` expecting a refusal; returns the problems.
    func refusal(_ fixture: FleetFixture, _ host: String = "a") throws -> [ResolutionProblem] {
        do {
            _ = try resolve(fixture, host)
            Issue.record("expected host \(host) to be refused")
            return []
        } catch let error as ResolutionError {
            return error.problems
        }
    }

    @Test func commonLinksBecomePlainFilesAndSecretsTravelBeside() throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        try fixture.write("common/sub/deep.nix", "{ }\n")
        try fixture.write("hosts/a/run.sh", "#!/bin/sh\n", mode: 0o750)
        try fixture.write("secrets/a/token", "s3cret\n", mode: 0o600)
        try fixture.link("hosts/a/alias.nix", to: "common/base.nix")
        let tree = try resolve(fixture, "a")
        let byPath = Dictionary(uniqueKeysWithValues: tree.entries.map { ($0.path, $0) })
        #expect(
            tree.entries.map(\.path) == [
                "secrets", "secrets/token", "tree", "tree/alias.nix", "tree/common", "tree/common/base.nix",
                "tree/common/sub", "tree/common/sub/deep.nix", "tree/flake.nix", "tree/run.sh",
            ])
        #expect(byPath["tree/common"]?.kind == .directory)
        #expect(byPath["tree/run.sh"]?.permissions == 0o755)
        #expect(byPath["tree/flake.nix"]?.permissions == 0o644)
        #expect(byPath["secrets/token"]?.permissions == 0o400)
        #expect(byPath["secrets"]?.permissions == 0o700)
        guard case .file(let source, _, _) = byPath["tree/alias.nix"]?.kind else {
            Issue.record("alias.nix is not a file")
            return
        }
        #expect(source.hasSuffix("/common/base.nix"))
    }

    @Test(arguments: ["/etc/shadow", "../../../../../../etc/passwd", "../../.."])
    func linksOutOfTheRepositoryAreRefusedNamingLinkAndTarget(target: String) throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        try fixture.link("hosts/a/evil", to: target)
        #expect(try refusal(fixture) == [.linkOutsideRepository(link: "hosts/a/evil", target: target)])
    }

    @Test func linksIntoAnotherHostAreRefused() throws {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        try fixture.link("hosts/a/peer.nix", to: "../b/flake.nix")
        try fixture.link("hosts/a/peer-dir", to: "/" + fixture.repository + "/hosts/b")
        let problems = try refusal(fixture)
        #expect(problems.count == 2)
        #expect(
            problems.contains(.linkIntoOtherHost(link: "hosts/a/peer.nix", target: "../b/flake.nix", otherHost: "b")))
        #expect(problems.allSatisfy { $0.description.contains("host b's tree") })
    }

    @Test func linksIntoSecretsAreRefusedEvenTheHostsOwn() throws {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        try fixture.write("secrets/a/token", "mine\n")
        try fixture.write("secrets/b/token", "theirs\n")
        try fixture.link("hosts/a/own", to: "../../secrets/a/token")
        try fixture.link("hosts/a/theirs", to: "../../secrets/b")
        #expect(
            try refusal(fixture) == [
                .linkIntoSecrets(link: "hosts/a/own", target: "../../secrets/a/token"),
                .linkIntoSecrets(link: "hosts/a/theirs", target: "../../secrets/b"),
            ])
    }

    @Test func linkFromCommonIntoAnotherHostIsRefused() throws {
        let fixture = try FleetFixture(hosts: ["a", "b"])
        defer { fixture.remove() }
        try fixture.link("common/sneaky.nix", to: "../hosts/b/flake.nix")
        #expect(
            try refusal(fixture) == [
                .linkIntoOtherHost(link: "hosts/a/common/sneaky.nix", target: "../hosts/b/flake.nix", otherHost: "b")
            ])
    }

    /// One resolver serves a whole publish and resolves `common/` once; every host still gets its own
    /// link checks, and the same tree a resolver of its own would give.
    @Test func aSharedResolverGivesEachHostItsOwnVerdict() throws {
        let fixture = try FleetFixture(hosts: ["a", "b", "c"])
        defer { fixture.remove() }
        try fixture.write("common/sub/deep.nix", "{ }\n")
        try fixture.link("hosts/b/lib", to: "../../common")
        try fixture.link("hosts/c/peer", to: "../a/flake.nix")
        let shared = try HostTreeResolver(repository: fixture.repository)
        for host in ["a", "b"] {
            let fresh = try resolve(fixture, host)
            #expect(try shared.resolve(try HostName(host), roles: []).entries == fresh.entries)
        }
        #expect(
            try shared.resolve(try HostName("b"), roles: []).entries.contains { $0.path == "tree/lib/sub/deep.nix" })
        #expect(throws: ResolutionError.self) { try shared.resolve(try HostName("c"), roles: []) }

        // A link in common/ into b's tree is b's own business, and refused for everyone else, in any order.
        try fixture.link("common/sneaky.nix", to: "../hosts/b/flake.nix")
        let again = try HostTreeResolver(repository: fixture.repository)
        let b = try again.resolve(try HostName("b"), roles: [])
        #expect(b.entries.contains { $0.path == "tree/common/sneaky.nix" })
        do {
            _ = try again.resolve(try HostName("a"), roles: [])
            Issue.record("a was not refused")
        } catch let error as ResolutionError {
            #expect(
                error.problems == [
                    .linkIntoOtherHost(
                        link: "hosts/a/common/sneaky.nix", target: "../hosts/b/flake.nix", otherHost: "b")
                ])
        }
    }

    @Test func brokenLinksAndCyclesAreRefused() throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        try fixture.link("hosts/a/dangling", to: "does-not-exist.nix")
        try fixture.link("hosts/a/loop", to: ".")
        try fixture.link("hosts/a/up", to: "..")
        try fixture.link("hosts/a/ping", to: "pong")
        try fixture.link("hosts/a/pong", to: "ping")
        let problems = try refusal(fixture)
        #expect(problems.contains(.brokenLink(link: "hosts/a/dangling", target: "does-not-exist.nix")))
        #expect(problems.contains(.linkCycle(link: "hosts/a/loop", target: ".")))
        #expect(problems.contains(.linkCycle(link: "hosts/a/ping", target: "pong")))
        #expect(problems.contains(.linkCycle(link: "hosts/a/pong", target: "ping")))
        // `up` leads to hosts/, which holds every host's tree.
        #expect(problems.contains { if case .linkIntoOtherHost(link: "hosts/a/up", _, _) = $0 { true } else { false } })
        #expect(problems.count == 5)
    }

    @Test func specialFilesAreRefused() throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        #expect(mkfifo(fixture.repository + "/hosts/a/pipe", 0o644) == 0)
        let nullDevice: dev_t = (1 << 8) | 3  // makedev(1, 3), like /dev/null
        #expect(mknod(fixture.repository + "/common/null", S_IFCHR | 0o644, nullDevice) == 0)
        let problems = try refusal(fixture)
        #expect(problems.contains(.specialFile(path: "hosts/a/pipe")))
        #expect(problems.contains(.specialFile(path: "hosts/a/common/null")))
    }

    @Test func linksInsideSecretsAndALinkedHostDirectoryAreRefused() throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        try fixture.write("secrets/a/real", "x\n")
        try fixture.link("secrets/a/alias", to: "real")
        #expect(try refusal(fixture) == [.linkInSecrets(path: "secrets/a/alias", target: "real")])

        try FileIO.createDirectories(fixture.repository + "/elsewhere")
        try FileIO.removeTree(fixture.repository + "/hosts/a")
        try fixture.link("hosts/a", to: "../elsewhere")
        #expect(try refusal(fixture).contains(.hostDirectoryIsLink(path: "hosts/a")))
    }

    @Test func hardlinksAreCopiedAsBytesNeverAsLinks() async throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        let outside = fixture.directory.path("outside-secret")
        try FileIO.writeAtomically(Array("outside bytes\n".utf8), to: outside)
        #expect(link(outside, fixture.repository + "/hosts/a/hard") == 0)
        let output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let layout = try fixture.layout("a")
        let reader = try ArchiveReader(path: layout.snapshot(1))
        var kinds: [String: ArchiveEntryKind] = [:]
        while let header = try reader.nextEntry() { kinds[header.path] = header.kind }
        #expect(kinds["tree/hard"] == .regularFile)
        #expect(!kinds.values.contains { if case .hardLink = $0 { true } else { false } })
        #expect(try FileStatus.of(layout.snapshot(1))?.linkCount == 1)
    }

    /// A hard link is the same file under two names: one in secrets/ or in another host's tree is refused the
    /// way such a symbolic link is, naming both paths; the host keeps its generation, the others publish.
    @Test func hardlinksIntoSecretsOrAnotherHostAreRefusedNamingBothPaths() async throws {
        let fixture = try FleetFixture(hosts: ["a", "b", "c"])
        defer { fixture.remove() }
        try fixture.write("secrets/b/token", "TOKEN-OF-B\n", mode: 0o600)
        try fixture.write("secrets/a/own", "mine\n", mode: 0o600)
        let first = try await fixture.fleet(["publish"])
        #expect(first.exitCode == 0, "\(first.standardError)")
        let before = try FileIO.read(try fixture.layout("a").manifest)
        let repository = fixture.repository
        #expect(link(repository + "/secrets/b/token", repository + "/hosts/a/x") == 0)
        #expect(link(repository + "/secrets/a/own", repository + "/hosts/a/own-secret") == 0)
        #expect(link(repository + "/hosts/c/flake.nix", repository + "/hosts/a/peer.nix") == 0)
        #expect(link(repository + "/secrets/b/token", repository + "/secrets/a/stolen") == 0)
        try fixture.write("common/shared.nix", "{ }\n")
        #expect(link(repository + "/common/shared.nix", repository + "/hosts/b/shared.nix") == 0)
        try fixture.write("hosts/b/edit.nix", "{ }\n")

        let problems = try refusal(fixture, "a")
        #expect(problems.count == 5, "\(problems.map(\.description).joined(separator: "\n"))")
        // x is also secrets/a/stolen, a's own secret: a tree file is never a secret, whosever.
        #expect(problems.contains(.hardlinkIntoSecrets(path: "hosts/a/x", other: "secrets/a/stolen")))
        #expect(problems.contains(.hardlinkIntoSecrets(path: "hosts/a/x", other: "secrets/b/token")))
        #expect(problems.contains(.hardlinkIntoSecrets(path: "hosts/a/own-secret", other: "secrets/a/own")))
        #expect(
            problems.contains(
                .hardlinkIntoOtherHost(path: "hosts/a/peer.nix", other: "hosts/c/flake.nix", otherHost: "c")))
        #expect(problems.contains(.hardlinkIntoSecrets(path: "secrets/a/stolen", other: "secrets/b/token")))
        // c's own file is c's; b's link to common/ is allowed, as a symbolic link there would be.
        #expect(
            try refusal(fixture, "c").contains(
                .hardlinkIntoOtherHost(path: "hosts/c/flake.nix", other: "hosts/a/peer.nix", otherHost: "a")))
        // b's secret is named elsewhere, but b's own tree and secrets are b's: b is not refused for a's links...
        // except that a's secrets/a/stolen is also b's token: a secret shared between two hosts refuses both.
        #expect(try refusal(fixture, "b") == [.hardlinkIntoSecrets(path: "secrets/b/token", other: "secrets/a/stolen")])
        unlink(repository + "/secrets/a/stolen")
        #expect(try resolve(fixture, "b").entries.contains { $0.path == "tree/shared.nix" })
        #expect(link(repository + "/secrets/b/token", repository + "/secrets/a/stolen") == 0)

        let output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 1)
        #expect(
            output.standardOutput.contains("hosts/a/x is a hard link to secrets/b/token"), "\(output.standardOutput)")
        #expect(try FileIO.read(try fixture.layout("a").manifest) == before, "a keeps its generation")
        unlink(repository + "/secrets/a/stolen")
        #expect(try await fixture.fleet(["publish"]).exitCode == 1)
        #expect(try fixture.verifiedManifest("b").generation == 2, "b publishes while a and c are refused")
        for host in ["a", "c"] {
            for name in try FileIO.listDirectory(try fixture.layout(host).snapshots) {
                let bytes = try FileIO.read(try fixture.layout(host).snapshots + "/" + name)
                let reader = try ArchiveReader(path: try fixture.layout(host).snapshots + "/" + name)
                var contents: [String] = []
                while let header = try reader.nextEntry() { contents.append(header.path) }
                #expect(!contents.contains("tree/x") && bytes.count > 0)
            }
        }
    }

    @Test func treesOverTheLimitAreRefused() throws {
        let fixture = try FleetFixture(hosts: ["a"])
        defer { fixture.remove() }
        try fixture.write("hosts/a/big.bin", String(repeating: "x", count: 4096))
        let resolver = try HostTreeResolver(
            repository: fixture.repository, limits: .init(maxEntries: 100, maxBytes: 1000))
        #expect(throws: ResolutionError.self) { try resolver.resolve(try HostName("a"), roles: []) }
    }
}
