import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import ServerStore
import Testing

/// `fleet update`, offline, with real git and Nix: each host's flake has an input `pkgs` (and an unused `tools`), a
/// local git repository standing in for nixpkgs. The test moves it to a revision that breaks one host (a file `break-<host>` makes its
/// system throw) and then to one that fixes it. Host names of their own.
@Suite("fleet update", .serialized)
struct FleetUpdateTests {
    @Test func allOrNothingChangesNothingWhenAHostFailsAndPublishesEverythingOnceAllBuild() async throws {
        let fleet = try await UpdateFleet(hosts: ["updallgreen", "updallbroken"])
        defer { fleet.remove() }
        try await fleet.advanceUpstream(version: "2", breaking: ["updallbroken"])
        let before = try await fleet.snapshot()

        var (status, output) = try await fleet.update(["--commit"])
        #expect(status == 1, "\(output)")
        #expect(output["outcome"] as? String == "failed")
        let broken = fleet.host("updallbroken", output)
        #expect(broken["status"] as? String == "failed", "\(broken)")
        #expect((broken["reason"] as? String)?.contains("upstream breaks updallbroken") == true, "\(broken)")
        let green = fleet.host("updallgreen", output)
        #expect(green["status"] as? String == "held", "built, but all or nothing: \(green)")
        #expect(green["generation"] as? Int == 1 && broken["generation"] as? Int == 1, "the generations they keep")
        #expect(try await fleet.snapshot() == before, "the repository and the chroots are untouched")
        #expect(try fleet.hookEvents().map(\.summary) == ["update-failed updallbroken"])
        #expect(try fleet.hookEvents().first?.reason.contains("upstream breaks updallbroken") == true)
        #expect(try fleet.scratchLeftovers().isEmpty)

        // Upstream fixes it: both build, the locks are committed and both hosts published from that commit.
        try await fleet.advanceUpstream(version: "3", breaking: [])
        (status, output) = try await fleet.update(["--commit"])
        #expect(status == 0, "\(output)")
        #expect(output["outcome"] as? String == "published")
        let head = try await fleet.git(["rev-parse", "HEAD"])
        #expect(output["commit"] as? String == head && head != before.head)
        #expect(try await fleet.git(["status", "--porcelain"]).isEmpty)
        let message = try await fleet.git(["log", "-1", "--format=%B"])
        let revision = try await fleet.upstreamRevision()
        #expect(message.contains("pkgs \(revision.prefix(12))"), "\(message)")
        for host in ["updallgreen", "updallbroken"] {
            let manifest = try fleet.fixture.verifiedManifest(host)
            #expect(manifest.generation == 2 && manifest.sourceCommit == head, "\(host): \(manifest)")
            #expect(try fleet.lockedRevision(host) == revision)
        }
        #expect(
            try fleet.hookEvents().map(\.summary).suffix(3) == [
                "published updallbroken", "published updallgreen", "update-published updallbroken,updallgreen",
            ])

        // Nothing new upstream: nothing to do.
        let settled = try await fleet.snapshot()
        (status, output) = try await fleet.update(["--commit"])
        #expect(status == 0 && output["outcome"] as? String == "current", "\(output)")
        #expect(try await fleet.snapshot() == settled)
    }

    /// The scratch copy's builds resolve hosts as a publish does, roles included.
    @Test func aHostWithRolesIsBuiltAndPublishedWithThem() async throws {
        let fleet = try await UpdateFleet(
            hosts: ["updroles"], extraToml: "[defaults]\nbuild = true\n", roles: ["updroles": ["web"]])
        defer { fleet.remove() }
        try await fleet.advanceUpstream(version: "2", breaking: [])
        let (status, output) = try await fleet.update(["--commit"])
        #expect(status == 0 && output["outcome"] as? String == "published", "\(output)")
        #expect(try fleet.fixture.verifiedManifest("updroles").generation == 2)
        #expect(try fleet.lockedRevision("updroles") == (try await fleet.upstreamRevision()))
    }

    @Test func perHostPublishesWhatBuiltAndHealsTheOtherOnceUpstreamIsFixed() async throws {
        let fleet = try await UpdateFleet(hosts: ["updgreen", "updbroken"])
        defer { fleet.remove() }
        let first = try await fleet.upstreamRevision()
        try await fleet.advanceUpstream(version: "2", breaking: ["updbroken"])
        let broken = try await fleet.upstreamRevision()

        var (status, output) = try await fleet.update(["--policy", "per-host", "--commit"])
        #expect(status == 1, "a host failed: \(output)")
        #expect(output["outcome"] as? String == "partial")
        #expect(fleet.host("updgreen", output)["status"] as? String == "published")
        #expect(fleet.host("updbroken", output)["status"] as? String == "failed")
        #expect(try fleet.fixture.verifiedManifest("updgreen").generation == 2)
        #expect(try fleet.fixture.verifiedManifest("updbroken").generation == 1, "it keeps its generation")
        // The repository records the lock each host is published with: only the green host's moved.
        #expect(try await fleet.git(["show", "--name-only", "--format=", "HEAD"]) == "hosts/updgreen/flake.lock")
        #expect(try fleet.lockedRevision("updgreen") == broken)
        #expect(try fleet.lockedRevision("updbroken") == first)
        #expect(try await fleet.git(["status", "--porcelain"]).isEmpty)
        #expect(try fleet.hookEvents().map(\.summary).contains("update-failed updbroken"))
        #expect(try fleet.hookEvents().map(\.summary).contains("update-published updgreen"))
        #expect(try fleet.hookEvents().map(\.summary).contains("published updgreen"))

        // The timer again, upstream still broken: the same tree is not built, nor announced, again.
        let announced = try fleet.hookEvents().count
        (status, output) = try await fleet.update(["--policy", "per-host", "--commit"])
        #expect(status == 1)
        let again = fleet.host("updbroken", output)
        #expect(again["status"] as? String == "failed" && again["remembered"] as? Bool == true, "\(again)")
        #expect(fleet.host("updgreen", output)["status"] as? String == "current")
        #expect(try fleet.hookEvents().count == announced)
        #expect(try fleet.fixture.verifiedManifest("updbroken").generation == 1)

        // Upstream is fixed: the broken host is published again by the next update, without anyone asking.
        try await fleet.advanceUpstream(version: "3", breaking: [])
        let fixed = try await fleet.upstreamRevision()
        (status, output) = try await fleet.update(["--policy", "per-host", "--commit"])
        #expect(status == 0, "\(output)")
        #expect(output["outcome"] as? String == "published")
        #expect(try fleet.fixture.verifiedManifest("updbroken").generation == 2)
        #expect(try fleet.fixture.verifiedManifest("updgreen").generation == 3)
        #expect(try fleet.lockedRevision("updbroken") == fixed && fleet.lockedRevision("updgreen") == fixed)
        #expect(try await fleet.git(["status", "--porcelain"]).isEmpty)
    }

    @Test func withoutCommitTheLocksAreWrittenAndADryRunWritesNothing() async throws {
        let fleet = try await UpdateFleet(hosts: ["updnocommit"])
        defer { fleet.remove() }
        try await fleet.advanceUpstream(version: "2", breaking: [])
        let before = try await fleet.snapshot()

        var (status, output) = try await fleet.update(["--dry-run"])
        #expect(status == 0 && output["outcome"] as? String == "would-publish", "\(output)")
        #expect(fleet.host("updnocommit", output)["status"] as? String == "held")
        #expect(try await fleet.snapshot() == before, "a dry run changes nothing")
        #expect(try fleet.hookEvents().isEmpty)

        (status, output) = try await fleet.update([])
        #expect(status == 0 && output["outcome"] as? String == "published", "\(output)")
        #expect(try await fleet.git(["rev-parse", "HEAD"]) == before.head, "no commit without --commit")
        #expect(try await fleet.git(["status", "--porcelain"]) == "M hosts/updnocommit/flake.lock")
        #expect(try fleet.lockedRevision("updnocommit") == (try await fleet.upstreamRevision()))
        let manifest = try fleet.fixture.verifiedManifest("updnocommit")
        #expect(manifest.generation == 2 && manifest.sourceCommit == before.head + "-dirty")
    }

    @Test func onlyTheNamedHostsAndInputsMoveAndAGatedHostIsNotBuiltTwice() async throws {
        let fleet = try await UpdateFleet(hosts: ["updpick", "updother"], extraToml: "[defaults]\nbuild = true\n")
        defer { fleet.remove() }
        let first = try await fleet.upstreamRevision()
        try await fleet.advanceUpstream(version: "2", breaking: [])
        let (status, output) = try await fleet.update(["updpick", "--input", "pkgs", "--commit", "--jobs", "2"])
        #expect(status == 0 && output["outcome"] as? String == "published", "\(output)")
        #expect((output["hosts"] as? [[String: Any]])?.count == 1)
        let picked = fleet.host("updpick", output)
        #expect(try fleet.lockedRevision("updpick", input: "pkgs") == (try await fleet.upstreamRevision()))
        #expect(try fleet.lockedRevision("updpick", input: "tools") == first, "an input not named stays")
        #expect(
            try fleet.lockedRevision("updother") == first && fleet.lockedRevision("updother", input: "tools") == first)
        #expect(try await fleet.git(["show", "--name-only", "--format=", "HEAD"]) == "hosts/updpick/flake.lock")
        let manifest = try fleet.fixture.verifiedManifest("updpick")
        #expect(manifest.generation == 2 && manifest.toplevel == picked["toplevel"] as? String, "\(picked)")
        #expect(try fleet.fixture.verifiedManifest("updother").generation == 1)
        // Built once by the update; the publish's build gate reused that build.
        let store = try StateStoreOpener.open(fleet.fixture)
        let builds = try store.events(host: try HostName("updpick")).map(\.kind).filter {
            ["built", "build-reused", "build-failed"].contains($0)
        }
        #expect(builds == ["built", "built", "build-reused"], "\(builds)")
    }

    @Test func hostileArgumentsAndRepositoriesAreRefusedAndNothingChanges() async throws {
        let fleet = try await UpdateFleet(hosts: ["updhostile"])
        defer { fleet.remove() }
        try await fleet.advanceUpstream(version: "2", breaking: [])
        let before = try await fleet.snapshot()

        for (arguments, status, message) in [
            (["--input", "../pkgs"], Int32(64), "is not an input name"),
            (["--input", "pkgs;touch /tmp/x"], 64, "is not an input name"),
            (["--input", "--update-input"], 64, "--input"),
            (["--input", "nixpkgs"], 1, "nixpkgs: not an input of the flake.lock of host updhostile"),
            (["nosuchhost"], 1, "no host \"nosuchhost\""),
            (["../updhostile"], 1, "no host \"../updhostile\""),
            (["--jobs", "0"], 64, "--jobs"),
            (["--policy", "some"], 64, "policy"),
        ] {
            let output = try await fleet.fixture.fleet(["update"] + arguments)
            #expect(output.exitCode == status, "\(arguments): \(output.standardError)")
            #expect(output.standardError.contains(message), "\(arguments): \(output.standardError)")
            #expect(try await fleet.snapshot() == before, "\(arguments)")
        }

        // A dirty repository is refused, naming what is uncommitted, and left as it was.
        try fleet.fixture.write("hosts/updhostile/extra.nix", "{ }\n")
        var output = try await fleet.fixture.fleet(["update", "--commit"])
        #expect(output.exitCode == 1 && output.standardError.contains("uncommitted changes"), "\(output.standardError)")
        #expect(output.standardError.contains("hosts/updhostile/extra.nix"))
        #expect(try await fleet.git(["status", "--porcelain"]) == "?? hosts/updhostile/extra.nix")
        #expect(try await fleet.git(["rev-parse", "HEAD"]) == before.head)
        #expect(try fleet.fixture.chrootListing() == before.chroot)
        _ = unlink(fleet.fixture.repository + "/hosts/updhostile/extra.nix")
        let lock = fleet.fixture.repository + "/hosts/updhostile/flake.lock"
        let locked = try FileIO.read(lock)
        try fleet.fixture.write("hosts/updhostile/flake.lock", "{}")
        output = try await fleet.fixture.fleet(["update"])
        #expect(output.exitCode == 1 && output.standardError.contains("uncommitted changes"), "\(output.standardError)")
        #expect(try FileIO.read(lock) == Array("{}".utf8), "the sysadmin's edit is kept")
        try FileIO.writeAtomically(locked, to: lock)
        #expect(try await fleet.snapshot() == before)

        // A committed lock that is not a flake lock: the host fails, naming the file, and nothing changes.
        try await fleet.commitAll("a broken lock") { try FileIO.writeAtomically(Array("{ not json".utf8), to: lock) }
        let brokenLock = try await fleet.snapshot()
        var (status, json) = try await fleet.update(["--commit"])
        #expect(status == 1 && json["outcome"] as? String == "failed", "\(json)")
        let reason = fleet.host("updhostile", json)["reason"] as? String ?? ""
        #expect(reason.contains("hosts/updhostile/flake.lock: not a flake lock"), "\(reason)")
        #expect(try await fleet.snapshot() == brokenLock)
        try await fleet.commitAll("the lock again") { try FileIO.writeAtomically(locked, to: lock) }

        // A lock that is a link (into common/) is not the host's own: the host is skipped, nothing written.
        try await fleet.commitAll(
            "lock as a link",
            {
                try FileIO.writeAtomically(locked, to: fleet.fixture.repository + "/common/shared.lock")
                _ = unlink(lock)
                try fleet.fixture.link("hosts/updhostile/flake.lock", to: "../../common/shared.lock")
            })
        let linked = try await fleet.snapshot()
        (status, json) = try await fleet.update([])
        #expect(status == 0 && json["outcome"] as? String == "current", "\(json)")
        let skipped = fleet.host("updhostile", json)
        #expect(skipped["status"] as? String == "skipped", "\(skipped)")
        #expect((skipped["reason"] as? String)?.contains("flake.lock of its own") == true)
        #expect(try await fleet.snapshot() == linked)

        // Not a git repository at all.
        try FileIO.removeTree(fleet.fixture.repository + "/.git")
        let chroot = try fleet.fixture.chrootListing()
        output = try await fleet.fixture.fleet(["update", "--commit"])
        #expect(
            output.exitCode == 1 && output.standardError.contains("is not a git repository"), "\(output.standardError)")
        #expect(try fleet.fixture.chrootListing() == chroot)
        #expect(try fleet.scratchLeftovers().isEmpty)
    }
}

/// A fleet repository under git whose hosts' flakes lock `pkgs`, a local git repository the test advances, and
/// a hook that writes every event into a file.
struct UpdateFleet {
    let fixture: FleetFixture
    var upstream: String { fixture.directory.path("upstream") }
    var events: String { fixture.directory.path("events.jsonl") }

    /// What must not change when an update refuses or fails.
    struct Snapshot: Equatable {
        let head: String
        let status: String
        let locks: [String]
        let chroot: [String]
    }

    /// `roles`: hosts given roles in fleet.toml, whose systems read the generated `fleet-roles.nix` (so they
    /// build only when their roles are in the tree).
    init(hosts: [String], extraToml: String = "", roles: [String: [String]] = [:]) async throws {
        fixture = try FleetFixture(hosts: [])
        var toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8) + extraToml + "\n"
        toml += "[[hooks]]\ncommand = [\"/bin/sh\", \"-c\", \"cat >> \(events)\"]\n\n"
        for host in hosts {
            toml += "[hosts.\(host)]\nkey = \"\(KeyPair.publicLine(forHost: host))\"\n"
            var flake = Self.flake(host: host, upstream: upstream)
            if let hostRoles = roles[host] {
                toml += "roles = [\(hostRoles.map { "\"\($0)\"" }.joined(separator: ", "))]\n"
                for role in hostRoles { try fixture.write("roles/\(role)/default.nix", "{ }\n") }
                flake = flake.replacingOccurrences(
                    of: "version = builtins.readFile",
                    with: "roles = builtins.readFile ./fleet-roles.nix;\n      version = builtins.readFile")
            }
            try fixture.write("hosts/\(host)/flake.nix", flake)
        }
        try fixture.write("fleet.toml", toml)
        try FileIO.createDirectories(upstream)
        try await Self.git(upstream, ["init", "--quiet"])
        try await advanceUpstream(version: "1", breaking: [])
        try await Self.git(fixture.repository, ["init", "--quiet"])
        try await commitAll("the fleet") {}
        for host in hosts {
            let output = try await Command.run("nix", ["flake", "lock", fixture.repository + "/hosts/" + host])
            guard output.succeeded else { throw TestSupportError("nix flake lock: \(output.standardError)") }
        }
        try await commitAll("the locks") {}
        let published = try await fixture.fleet(["publish"])
        guard published.succeeded else { throw TestSupportError("fleet publish: \(published.standardError)") }
        // The hook heard the first publish; the tests count what updates announce.
        _ = unlink(events)
    }

    func remove() { fixture.remove() }

    /// A host whose system reads `version` from `pkgs` and throws when `pkgs` has `break-<host>`; `tools` is a
    /// second input (the same repository) that the system does not use.
    static func flake(host: String, upstream: String) -> String {
        """
        {
          inputs.pkgs = { url = "git+file://\(upstream)"; flake = false; };
          inputs.tools = { url = "git+file://\(upstream)"; flake = false; };
          outputs = { self, pkgs, tools }: {
            nixosConfigurations.\(host).config.system.build.toplevel =
              if builtins.pathExists (pkgs + "/break-\(host)") then throw "upstream breaks \(host)"
              else derivation {
                name = "nixos-system-\(host)";
                system = "x86_64-linux";
                builder = "/bin/sh";
                version = builtins.readFile (pkgs + "/version");
                args = [ "-c" "/bin/mkdir -p $out/bin && echo $version > $out/version" ];
              };
          };
        }

        """
    }

    /// Commits a new upstream revision: `version`, and a `break-<host>` file for each host it breaks.
    func advanceUpstream(version: String, breaking hosts: [String]) async throws {
        for name in try FileIO.listDirectory(upstream) where name.hasPrefix("break-") {
            _ = unlink(upstream + "/" + name)
        }
        try FileIO.writeAtomically(Array("\(version)\n".utf8), to: upstream + "/version")
        for host in hosts { try FileIO.writeAtomically(Array("\n".utf8), to: upstream + "/break-" + host) }
        try await Self.git(upstream, ["add", "-A"])
        try await Self.git(upstream, ["commit", "--quiet", "-m", "version \(version)"])
    }

    func upstreamRevision() async throws -> String { try await Self.git(upstream, ["rev-parse", "HEAD"]) }

    func commitAll(_ message: String, _ change: () async throws -> Void) async throws {
        try await change()
        try await Self.git(fixture.repository, ["add", "-A"])
        try await Self.git(fixture.repository, ["commit", "--quiet", "-m", message])
    }

    /// The revision of `input` that the host's flake.lock in the repository names.
    func lockedRevision(_ host: String, input: String = "pkgs") throws -> String? {
        let bytes = try FileIO.read(fixture.repository + "/hosts/\(host)/flake.lock")
        let lock = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        let nodes = lock?["nodes"] as? [String: Any]
        return ((nodes?[input] as? [String: Any])?["locked"] as? [String: Any])?["rev"] as? String
    }

    func snapshot() async throws -> Snapshot {
        let hosts = try FileIO.listDirectory(fixture.repository + "/hosts").sorted()
        return Snapshot(
            head: try await git(["rev-parse", "HEAD"]), status: try await git(["status", "--porcelain"]),
            locks: hosts.map { host in
                String(
                    decoding: (try? FileIO.read(fixture.repository + "/hosts/\(host)/flake.lock")) ?? [], as: UTF8.self)
            },
            chroot: try fixture.chrootListing())
    }

    func update(_ arguments: [String]) async throws -> (Int32, [String: Any]) {
        let output = try await fixture.fleet(["update", "--json"] + arguments)
        let object = try? JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any]
        guard let object else {
            throw TestSupportError("fleet update \(arguments): no JSON (\(output.exitCode)): \(output.standardError)")
        }
        return (output.exitCode, object)
    }

    func host(_ name: String, _ output: [String: Any]) -> [String: Any] {
        (output["hosts"] as? [[String: Any]])?.first { $0["host"] as? String == name } ?? [:]
    }

    struct HookEvent {
        let summary: String
        let reason: String
    }

    /// The events the hook received, as "<event> <host or details.hosts>".
    func hookEvents() throws -> [HookEvent] {
        guard FileManager.default.fileExists(atPath: events) else { return [] }
        return try String(contentsOfFile: events, encoding: .utf8).split(separator: "\n").map { line in
            let event = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
            let details = event["details"] as? [String: String] ?? [:]
            let subject = event["host"] as? String ?? details["hosts"] ?? "?"
            return HookEvent(
                summary: "\(event["event"] as? String ?? "?") \(subject)", reason: event["reason"] as? String ?? "")
        }
    }

    func scratchLeftovers() throws -> [String] {
        let directory = fixture.stateDirectory + "/updates"
        guard FileManager.default.fileExists(atPath: directory) else { return [] }
        return try FileIO.listDirectory(directory)
    }

    @discardableResult
    func git(_ arguments: [String]) async throws -> String { try await Self.git(fixture.repository, arguments) }

    /// git with an identity of the test's own, whatever the machine's configuration says.
    @discardableResult
    static func git(_ directory: String, _ arguments: [String]) async throws -> String {
        let output = try await Command.run(
            "git", ["-C", directory, "-c", "user.name=fleet test", "-c", "user.email=test@fleet.invalid"] + arguments)
        guard output.succeeded else {
            throw TestSupportError("git \(arguments.joined(separator: " ")): \(output.standardError)")
        }
        return output.standardOutput.trimmingWhitespace()
    }
}
