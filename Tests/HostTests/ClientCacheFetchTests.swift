import ClientStateStore
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import NixKit
import ServerStore
import Testing

@testable import HostAgent

/// The host fetches from the fleet's binary cache only what its Nix store lacks, and keeps no second copy of
/// the closure (see ``ClientRunSuite`` for what the client suites share). Host names here are used by no other
/// test: these tests delete store paths.
@Suite("fleet-client fetches only the store paths it lacks from the binary cache", .serialized)
struct ClientCacheFetchTests: ClientRunSuite {
    /// A toy host flake: `bindings` are Nix `let` bindings that may use `dependency name text` (a store path
    /// holding `text`), and the toplevel records `dependencies` (a Nix string) and activates as the toy systems do.
    static func toyFlake(host: String, bindings: String, dependencies: String) -> String {
        """
        {
          outputs = { self }: let
            dependency = name: text: derivation {
              inherit name;
              system = "x86_64-linux";
              builder = "/bin/sh";
              args = [ "-c" "echo '${text}' > $out" ];
            };
        \(bindings)
          in {
            nixosConfigurations.\(host).config.system.build.toplevel = derivation {
              name = "nixos-system-\(host)-toy";
              system = "x86_64-linux";
              builder = "/bin/sh";
              args = [ "-c" ''
                /bin/mkdir -p $out/bin
                echo \(dependencies) > $out/dependencies
                switch=$out/bin/switch-to-configuration
                printf '#!/bin/sh\\necho "$1 \(host) '$out'" >> "$FLEET_ACTIVATION_LOG"\\n' > $switch
                /bin/chmod +x $switch
              '' ];
            };
          };
        }

        """
    }

    /// A host flake whose system has three dependencies of its own: `cachefetch-a`, `cachefetch-b` (whose text
    /// is `version`) and `cachefetch-c`, which b refers to, so the closure has two levels below the toplevel.
    /// The nonce makes every path this test's alone.
    static func flake(host: String, nonce: String, version: String) -> String {
        toyFlake(
            host: host,
            bindings: """
                    c = dependency "cachefetch-c" "c \(nonce)";
                    a = dependency "cachefetch-a" "a \(nonce)";
                    b = dependency "cachefetch-b" "b \(nonce) \(version) ${c}";
                """, dependencies: "${a} ${b}")
    }

    static func start(_ host: String, nonce: String) async throws -> ClientFleet {
        try await ClientFleet.start(hosts: [host]) { fixture in
            try fixture.write("hosts/\(host)/flake.nix", flake(host: host, nonce: nonce, version: "first"))
            try fixture.write(
                "fleet.toml",
                try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                    + "\n[defaults]\ncache = true\n")
        }
    }

    /// The store paths of `toplevel`'s closure, by the name after the hash.
    static func closure(of toplevel: String) throws -> [String: String] {
        var paths: [String: String] = [:]
        for path in try storeClosure(of: toplevel) { paths[String(path.dropFirst("/nix/store/".count + 33))] = path }
        return paths
    }

    /// Removes store paths (referrers first) and the server's build roots, as if this host never had them.
    static func forget(_ paths: [String], fleet: ClientFleet) throws {
        try forget(paths[0], fleet: fleet)
        for path in paths.dropFirst() {
            let output = try TestCommand.run("/usr/bin/nix-store", ["--delete", path])
            let gone = try FileStatus.of(path) == nil
            #expect(output.succeeded && gone, "\(path): \(output.standardError)")
        }
    }

    /// The regular files of the host's local cache besides `nix-cache-info`, by their path inside it (Nix's own
    /// empty directories, `log/` and `realisations/`, are not files).
    static func localCacheFiles(_ fleet: ClientFleet, _ host: String) -> Set<String> {
        let cache = fleet.stateDirectory(host) + "/cache"
        let enumerator = FileManager.default.enumerator(atPath: cache)
        var files: Set<String> = []
        while let name = enumerator?.nextObject() as? String {
            if enumerator?.fileAttributes?[.type] as? FileAttributeType == .typeRegular, name != "nix-cache-info" {
                files.insert(name)
            }
        }
        return files
    }

    @Test func aHostFetchesNothingItHoldsAndAnUpdateOnlyTheChangedPaths() async throws {
        let host = "cfetchupd"
        let nonce = UUID().uuidString
        let fleet = try await Self.start(host, nonce: nonce)
        defer { fleet.stop() }
        let first = try #require(try fleet.manifest(host).toplevel)
        let firstClosure = try Self.closure(of: first)
        #expect(
            Set(firstClosure.keys) == ["nixos-system-\(host)-toy", "cachefetch-a", "cachefetch-b", "cachefetch-c"])

        // The server built it in the Nix store this host shares: nothing to fetch, not even a narinfo.
        var output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        var report = try #require(try fleet.lastReport(host))
        #expect(
            report.cache
                == RunReport.CacheTransfer(
                    closurePaths: 4, missingPaths: 0, filesFetched: 0, bytesFetched: 0,
                    seconds: report.cache?.seconds ?? -1), "\(String(describing: report.cache))")
        #expect(output.standardError.contains("binary cache: fetched 0 of 4 paths (0.0 MB)"))
        #expect(!output.standardError.contains("while the download ran"), "nothing to substitute early")
        #expect(Self.localCacheFiles(fleet, host).isEmpty)

        // An update changes b (and so the toplevel); a and c stay. The host lacks exactly the two new paths.
        try fleet.fixture.write("hosts/\(host)/flake.nix", Self.flake(host: host, nonce: nonce, version: "second"))
        try await fleet.publish()
        let second = try #require(try fleet.manifest(host).toplevel)
        let secondClosure = try Self.closure(of: second)
        #expect(secondClosure["cachefetch-a"] == firstClosure["cachefetch-a"])
        #expect(secondClosure["cachefetch-c"] == firstClosure["cachefetch-c"])
        let newB = try #require(secondClosure["cachefetch-b"])
        #expect(newB != firstClosure["cachefetch-b"])
        try Self.forget([second, newB], fleet: fleet)

        output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(try fleet.state(host).applied?.system == second)
        #expect(try FileStatus.of(second) != nil && (try FileStatus.of(newB)) != nil, "substituted")
        report = try #require(try fleet.lastReport(host))
        let cache = try #require(report.cache)
        // Two entries' narinfos and NARs (each entry read twice): a's and c's were never read.
        #expect(cache.closurePaths == 4 && cache.missingPaths == 2 && cache.filesFetched == 4, "\(cache)")
        #expect(cache.bytesFetched > 0)
        let download = try #require(report.durations.download)
        #expect(download >= cache.seconds, "the cache transfer is counted in durations.download")
        let lacked = try #require(
            output.standardError.split(separator: "\n").first { $0.contains("paths this host lacked: ") })
        #expect(lacked.hasSuffix("paths this host lacked: cachefetch-b nixos-system-\(host)-toy"), "\(lacked)")
        #expect(output.standardError.contains("binary cache: fetched 2 of 4 paths"))
        // They went into the store as they arrived (one batch here), with GC roots of their own until the
        // toplevel's substitution rooted the whole closure. Only the batch's head is named and rooted: b is in the
        // toplevel's closure.
        #expect(
            output.standardError.contains(
                "substituted 2 of those paths into the Nix store in 1 batch(es) while the download ran"),
            "\(output.standardError)")
        let logDirectory = try fleet.layout(host).logs
        let runLog = try #require(try fleet.uploaded(host).last { $0.hasPrefix("log-") })
        let uploaded = try String(contentsOfFile: logDirectory + "/" + runLog, encoding: .utf8)
        let batch = try #require(
            uploaded.split(separator: "\n").first { $0.hasPrefix("--- nix-store --realise") && $0.contains("batch-1") })
        #expect(batch.contains(second) && !batch.contains(newB), "\(batch)")
        #expect(try FileStatus.of(fleet.stateDirectory(host) + "/cache-roots") == nil, "the batches' roots are gone")
        let timings = report.durations
        #expect(
            timings.build != nil && timings.build! >= 0 && timings.download! + timings.build! <= timings.total + 0.5)

        // After a successful apply nothing of the downloaded cache is left: it is in the Nix store.
        #expect(Self.localCacheFiles(fleet, host).isEmpty)

        // `fleet logs` shows what the transfer cost.
        let logs = try await fleet.fixture.fleet(["logs", host, "--no-log", "--last", "1"])
        #expect(logs.standardOutput.contains("cache:     fetched 2 of 4 paths ("), "\(logs.standardOutput)")
        #expect(logs.standardOutput.contains(", 4 files"), "\(logs.standardOutput)")
        #expect(logs.standardOutput.contains("steps:     download "), "\(logs.standardOutput)")
    }

    /// A substitution that fails keeps what was fetched for the next try, but no more than the current
    /// closure's missing paths: files of earlier runs are removed when a fetch starts.
    @Test func aFailedSubstitutionKeepsOnlyTheCurrentClosuresFiles() async throws {
        let host = "cfetchfail"
        let fleet = try await Self.start(host, nonce: UUID().uuidString)
        defer { fleet.stop() }
        let toplevel = try #require(try fleet.manifest(host).toplevel)
        let a = try #require(try Self.closure(of: toplevel)["cachefetch-a"])
        let hash = String(toplevel.dropFirst(11).prefix(32))
        let forged = try Self.forgeSignature(
            ofEntry: CacheEntryFiles.path(in: try fleet.layout(host).cache, of: toplevel))
        let narFile = try #require(
            forged.split(separator: "\n").first { $0.hasPrefix("URL: nar/") }.map { String($0.dropFirst(5)) })
        try Self.forget(toplevel, fleet: fleet)

        // Left by an earlier run: not in this closure.
        let cache = fleet.stateDirectory(host) + "/cache"
        try FileIO.createDirectories(cache + "/nar")
        let stale = "0123456789abcdfghijklmnpqrsvwxyz"
        try FileIO.writeAtomically(Array("StorePath: /nix/store/\(stale)-old\n".utf8), to: "\(cache)/\(stale).narinfo")
        try FileIO.writeAtomically(Array("old".utf8), to: cache + "/nar/old.nar.zst")

        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.failed, "\(output.standardError)")
        #expect(output.standardError.contains("substitution failed"))
        // The batch substituted while downloading failed first; the substitution after the download tried again
        // and is what the run reports.
        #expect(
            output.standardError.contains("substituting while downloading stopped at batch 1: substitution failed"),
            "\(output.standardError)")
        #expect(try FileStatus.of(toplevel) == nil, "neither substituted nor built")
        #expect(Self.localCacheFiles(fleet, host) == [hash + ".narinfo", narFile], "only the current closure's")
        let report = try #require(try fleet.lastReport(host))
        #expect(
            report.cache?.missingPaths == 1 && report.cache?.filesFetched == 2, "\(String(describing: report.cache))")
        // What the walk found in the store (a, below the missing toplevel) was held against garbage collection
        // during the run, as the batches are, and a failed run's roots stay until a system is realised.
        let roots = try TestCommand.run("/usr/bin/nix-store", ["--query", "--roots", a])
        #expect(
            roots.standardOutput.contains(cache + "-roots/run-") && roots.standardOutput.contains("-held-1"),
            "\(roots.standardOutput)")
        let deleted = try TestCommand.run("/usr/bin/nix-store", ["--delete", a])
        #expect(try !deleted.succeeded && FileStatus.of(a) != nil, "\(deleted.standardError)")
    }

    /// What failed runs left (the local cache's files, the batches' roots) goes once a system is in the store by
    /// another way: here the host is published without a cache and builds its system itself.
    @Test func aSystemBuiltHereDropsWhatFailedCacheRunsLeft() async throws {
        let host = "cfetchdrop"
        let fleet = try await Self.start(host, nonce: UUID().uuidString)
        defer { fleet.stop() }
        let toplevel = try #require(try fleet.manifest(host).toplevel)
        let held = try #require(try Self.closure(of: toplevel)["cachefetch-a"])
        try Self.forgeSignature(ofEntry: CacheEntryFiles.path(in: try fleet.layout(host).cache, of: toplevel))
        try Self.forget(toplevel, fleet: fleet)
        var output = try await fleet.client(host)
        #expect(output.exitCode == Self.failed, "\(output.standardError)")
        #expect(!Self.localCacheFiles(fleet, host).isEmpty, "the failed run kept what it fetched")
        // A root an earlier failed run left (its own name), holding a path of this closure.
        let roots = fleet.stateDirectory(host) + "/cache-roots"
        try FileIO.createDirectories(roots)
        try FileIO.replaceSymlink(roots + "/run-0badc0de-batch-1", pointingTo: held)

        let configuration = try String(contentsOfFile: fleet.fixture.repository + "/fleet.toml", encoding: .utf8)
        try fleet.fixture.write(
            "fleet.toml", configuration.replacingOccurrences(of: "cache = true", with: "cache = false"))
        try fleet.fixture.write(
            "hosts/\(host)/flake.nix", Self.flake(host: host, nonce: UUID().uuidString, version: "second"))
        try await fleet.publish()
        #expect(try fleet.manifest(host).hasCache == false)
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(Self.localCacheFiles(fleet, host).isEmpty, "\(Self.localCacheFiles(fleet, host))")
        #expect(try FileStatus.of(roots) == nil, "the batches' roots are gone")
    }

    /// What an earlier run left is used only when whole: a NAR file of the size and SHA-256 its narinfo says is not
    /// downloaded again; one cut by a crash (or emptied, as a batch's are once its paths are in the store), or of
    /// the right size but other bytes, is.
    @Test func aNarFileLeftWholeIsReusedAndOneCutOrDamagedIsDownloadedAgain() async throws {
        let host = "cfetchleft"
        let fleet = try await Self.start(host, nonce: UUID().uuidString)
        defer { fleet.stop() }
        let toplevel = try #require(try fleet.manifest(host).toplevel)
        let paths = try Self.closure(of: toplevel)
        let a = try #require(paths["cachefetch-a"])
        let b = try #require(paths["cachefetch-b"])
        let serverCache = try fleet.layout(host).cache
        func narFile(of path: String) throws -> String {
            try CacheEntryFiles.narFile(CacheEntryFiles.path(in: serverCache, of: path))
        }
        func nar(of path: String) throws -> [UInt8] {
            try CacheEntryFiles.parts(CacheEntryFiles.path(in: serverCache, of: path)).nar
        }
        try Self.forget([toplevel, a, b], fleet: fleet)

        let local = fleet.stateDirectory(host) + "/cache/nar/"
        try FileIO.createDirectories(local)
        let whole = try nar(of: a)
        try FileIO.writeAtomically(whole, to: local + narFile(of: a))
        // b's of the right size but other bytes (damaged, or what a server sent before it was corrected).
        let other = try nar(of: b).map { ~$0 }
        try FileIO.writeAtomically(other, to: local + narFile(of: b))
        let cut = try nar(of: toplevel)
        try FileIO.writeAtomically(Array(cut.prefix(cut.count / 2)), to: local + narFile(of: toplevel))

        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(try fleet.state(host).applied?.system == toplevel)
        let cache = try #require(try fleet.lastReport(host)?.cache)
        // Three entries' narinfos and two NARs: a's was whole.
        #expect(cache.missingPaths == 3 && cache.filesFetched == 5, "\(cache)")
        #expect(output.standardError.contains("downloading 2 NAR file(s)"), "\(output.standardError)")
        #expect(Self.localCacheFiles(fleet, host).isEmpty)
    }

    /// A toplevel referring to sixty paths, and two paths of identical contents: the toplevel's narinfo is longer
    /// than the first read of its entry (so its head is read again, up to 64 KiB), and the twins' NARs are one
    /// file (Nix names it by its hash), which the pool makes into two entries and the host downloads once.
    static func manyFlake(host: String, nonce: String) -> String {
        toyFlake(
            host: host,
            bindings: """
                    many = builtins.genList (i: dependency "cachefetch-many-${toString i}" "many ${toString i} \(nonce)") 60;
                    twinA = dependency "cachefetch-twin-a" "twin \(nonce)";
                    twinB = dependency "cachefetch-twin-b" "twin \(nonce)";
                """, dependencies: "${toString many} ${twinA} ${twinB}")
    }

    @Test func aLongNarinfoAndTwoPathsOfOneNarAreFetched() async throws {
        let host = "cfetchmany"
        let fleet = try await ClientFleet.start(hosts: [host]) { fixture in
            try fixture.write("hosts/\(host)/flake.nix", Self.manyFlake(host: host, nonce: UUID().uuidString))
            try fixture.write(
                "fleet.toml",
                try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                    + "\n[defaults]\ncache = true\n")
        }
        defer { fleet.stop() }
        let toplevel = try #require(try fleet.manifest(host).toplevel)
        let paths = try Self.closure(of: toplevel)
        #expect(paths.count == 63, "\(paths.keys.sorted())")
        let twinA = try #require(paths["cachefetch-twin-a"])
        let twinB = try #require(paths["cachefetch-twin-b"])
        let cache = try fleet.layout(host).cache
        let narinfo = try CacheEntryFiles.narinfo(CacheEntryFiles.path(in: cache, of: toplevel))
        #expect(narinfo.utf8.count > 2 << 10, "longer than the first read: \(narinfo.utf8.count) bytes")
        let (entryA, entryB) = (CacheEntryFiles.path(in: cache, of: twinA), CacheEntryFiles.path(in: cache, of: twinB))
        #expect(try CacheEntryFiles.narFile(entryA) == CacheEntryFiles.narFile(entryB), "one NAR file in Nix's layout")
        #expect(try CacheEntryFiles.parts(entryA).nar == CacheEntryFiles.parts(entryB).nar)
        #expect(try FileStatus.of(entryA)?.inode != FileStatus.of(entryB)?.inode, "two entries")

        try Self.forget([toplevel] + paths.values.filter { $0 != toplevel }, fleet: fleet)
        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(try fleet.state(host).applied?.system == toplevel)
        #expect(try FileStatus.of(twinA) != nil && (try FileStatus.of(twinB)) != nil)
        let transfer = try #require(try fleet.lastReport(host)?.cache)
        // 63 heads, the toplevel's again, and 62 NARs: the twins' one file is downloaded once.
        #expect(transfer.missingPaths == 63 && transfer.filesFetched == 63 + 1 + 62, "\(transfer)")
        #expect(output.standardError.contains("downloading 62 NAR file(s)"), "\(output.standardError)")
        #expect(Self.localCacheFiles(fleet, host).isEmpty)
    }

    /// Cache entries come from the server, which the host does not trust with its memory or its store: a narinfo
    /// over the size limit or not followed by the empty line, one that describes another path than the entry's
    /// name says or none, one with a line Nix would read otherwise than fleet checks it (a URL outside the cache),
    /// or an entry whose length is not its narinfo's and the NAR's it announces, stops the run before anything is
    /// written or substituted, naming the entry; once the server's file is right again the same host applies.
    @Test func hostileCacheEntriesAreRefusedNamingTheEntryAndNothingIsWrittenOrSubstituted() async throws {
        let host = "cfetchhostile"
        let fleet = try await Self.start(host, nonce: UUID().uuidString)
        defer { fleet.stop() }
        let toplevel = try #require(try fleet.manifest(host).toplevel)
        let paths = try Self.closure(of: toplevel)
        let b = try #require(paths["cachefetch-b"])
        let a = try #require(paths["cachefetch-a"])
        let name = String(b.dropFirst("/nix/store/".count).prefix(32))
        let entry = CacheEntryFiles.path(in: try fleet.layout(host).cache, of: b)
        let originalEntry = try FileIO.readNoFollow(entry, limit: 1 << 20)
        let (original, nar) = try CacheEntryFiles.parts(entry)
        try Self.forget([toplevel, b], fleet: fleet)

        let oversized = original + "Padding: " + String(repeating: "x", count: 70 << 10) + "\n"
        let describingAnother = original.replacingOccurrences(of: "StorePath: \(b)", with: "StorePath: \(a)")
        #expect(describingAnother != original)
        // Nix reads a line's value from two bytes after its first colon, and the last of two URL lines: a URL that
        // a check of "URL: " lines alone would not see.
        let urlNixWouldRead = original + "URL:\t../../../../etc/hostname\n"
        let lines = original.split(separator: "\n").count
        let unnamed =
            original.split(separator: "\n").filter { !$0.hasPrefix("StorePath: ") }.joined(separator: "\n") + "\n"
        let header = Array(original.utf8) + [0x0A]
        let cases: [([UInt8], String)] = [
            (Array(oversized.utf8) + [0x0A] + nar, "does not start with a narinfo of at most 64 KiB"),
            (Array(original.utf8), "does not start with a narinfo of at most 64 KiB"),
            (Array(describingAnother.utf8) + [0x0A] + nar, "describes \(a), not \(b)"),
            (Array(urlNixWouldRead.utf8) + [0x0A] + nar, "line \(lines + 1) is not of the form"),
            (Array(unnamed.utf8) + [0x0A] + nar, "no well-formed StorePath line"),
            (header + nar.prefix(nar.count / 2), "is \(header.count + nar.count / 2) bytes, not its narinfo's"),
            (header + nar + [0], "is \(header.count + nar.count + 1) bytes, not its narinfo's"),
        ]
        for (hostile, why) in cases {
            // Replaced by rename: the pool's entry, which the host's links, stays as it was.
            try CacheEntryFiles.replace(entry, with: hostile)
            let output = try await fleet.client(host)
            #expect(output.exitCode == Self.failed, "\(output.standardError)")
            #expect(
                output.standardError.contains("cache/" + name) && output.standardError.contains(why),
                "\(why): \(output.standardError)")
            #expect(try FileStatus.of(toplevel) == nil && (try FileStatus.of(b)) == nil, "nothing substituted")
            #expect(Self.localCacheFiles(fleet, host).isEmpty, "nothing written into the local cache")
            #expect(try fleet.state(host).applied == nil)
        }

        try CacheEntryFiles.replace(entry, with: originalEntry)
        let output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(try fleet.state(host).applied?.system == toplevel)
        #expect(Self.localCacheFiles(fleet, host).isEmpty)
    }

    /// A NAR damaged on the server in place (one byte, the same size: every length agrees, so only its bytes
    /// tell) gets as far as Nix, which refuses it: the run fails naming the path, the damage and `fleet gc
    /// --verify`, installs nothing and keeps no damaged file; once the server's `fleet gc --verify` made the
    /// entry again from its store, the host applies.
    @Test func aNarDamagedOnTheServerIsNamedAndTheHostAppliesOnceVerifyRepairedIt() async throws {
        let host = "cfetchrot"
        let fleet = try await Self.start(host, nonce: UUID().uuidString)
        defer { fleet.stop() }
        let toplevel = try #require(try fleet.manifest(host).toplevel)
        let b = try #require(try Self.closure(of: toplevel)["cachefetch-b"])
        let entry = CacheEntryFiles.path(in: try fleet.layout(host).cache, of: b)
        let original = try FileIO.readNoFollow(entry, limit: 1 << 20)
        let narFile = try CacheEntryFiles.narFile(entry)
        try CacheEntryFiles.overwrite(entry, at: original.count - 2, with: [original[original.count - 2] ^ 0x55])
        try Self.forget([toplevel, b], fleet: fleet)

        var output = try await fleet.client(host)
        #expect(output.exitCode == Self.failed, "\(output.standardError)")
        #expect(
            output.standardError.contains("the fleet cache's NAR of \(b) is damaged on the server: its SHA-256 is")
                && output.standardError.contains("`fleet gc --verify` on the server"), "\(output.standardError)")
        #expect(try FileStatus.of(toplevel) == nil && (try FileStatus.of(b)) == nil, "nothing of it installed")
        #expect(!Self.localCacheFiles(fleet, host).contains("nar/" + narFile), "the damaged NAR is not kept")
        #expect(try fleet.state(host).applied == nil)
        #expect(try fleet.state(host).failed == nil, "not held against the generation: the next run tries again")

        // The server: its store gets the system back (its build), and the verification makes the entry again.
        #expect(try await fleet.fixture.fleet(["build", host]).exitCode == 0)
        let verified = try await fleet.fixture.fleet(["gc", "--verify"])
        #expect(verified.exitCode == 0, "\(verified.standardOutput)\(verified.standardError)")
        #expect(verified.standardOutput.contains("1 damaged, 1 repaired"), "\(verified.standardOutput)")
        #expect(try FileIO.readNoFollow(entry, limit: 1 << 20) == original)

        try Self.forget([toplevel, b], fleet: fleet)
        output = try await fleet.client(host)
        #expect(output.exitCode == Self.applied, "\(output.standardError)")
        #expect(try fleet.state(host).applied?.system == toplevel)
        #expect(Self.localCacheFiles(fleet, host).isEmpty)
    }

    /// After a failed substitution only a NAR whose bytes are not its narinfo's counts as damaged on the server:
    /// not one that a substituted batch emptied (the failure is then the generation's or this machine's, and the
    /// generation must be recorded as failed), not a whole one.
    @Test func onlyANarOfOtherBytesThanItsNarinfoSaysCountsAsDamaged() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try FileIO.createDirectories(directory.path("nar"))
        func add(_ name: Character, bytes: [UInt8], onDisk: [UInt8]) throws {
            let hash = String(repeating: name, count: 32)
            let file = String(repeating: name, count: 52) + ".nar.zst"
            var hasher = SHA256Hasher()
            hasher.update(bytes)
            let narinfo = """
                StorePath: /nix/store/\(hash)-\(name)
                URL: nar/\(file)
                Compression: zstd
                FileHash: sha256:\(NixBase32.encode(hasher.finalize()))
                FileSize: \(bytes.count)
                NarHash: sha256:\(String(repeating: "0", count: 52))
                NarSize: 1
                References:\u{20}

                """
            try directory.writeFile(hash + ".narinfo", text: narinfo)
            try FileIO.writeAtomically(onDisk, to: directory.path("nar/" + file))
        }
        let bytes = Array("a NAR, compressed".utf8)
        try add("a", bytes: bytes, onDisk: bytes)
        try add("b", bytes: bytes, onDisk: [])
        try add("c", bytes: bytes, onDisk: bytes.map { $0 ^ 1 })
        let damaged = CacheFetch.damagedNars(in: directory.path)
        #expect(damaged.map(\.storePath) == ["/nix/store/\(String(repeating: "c", count: 32))-c"])
        #expect(damaged.first?.reason.contains("its SHA-256 is sha256:") == true)
    }

    /// The walk holds the narinfos of every path the store lacks in memory until their NARs come: a server whose
    /// narinfos take more than the walk's limit (256 MiB; here a few hundred bytes, through the debug build's
    /// `FLEET_TEST_NARINFO_MEMORY_LIMIT`) is refused at the entry where the limit is passed, counted across the
    /// walk's levels, before anything is written or substituted; within the limit the same host applies.
    @Test func narinfosBeyondTheWalksMemoryLimitAreRefusedBeforeAnythingIsWritten() async throws {
        let host = "cfetchmemory"
        let fleet = try await Self.start(host, nonce: UUID().uuidString)
        defer { fleet.stop() }
        let toplevel = try #require(try fleet.manifest(host).toplevel)
        let b = try #require(try Self.closure(of: toplevel)["cachefetch-b"])
        let cache = try fleet.layout(host).cache
        try Self.forget([toplevel, b], fleet: fleet)

        // What the walk counts for the toplevel, the first level: its narinfo and each reference it names.
        let narinfo = try CacheEntryFiles.narinfo(CacheEntryFiles.path(in: cache, of: toplevel))
        let references =
            try #require(narinfo.split(separator: "\n").first { $0.hasPrefix("References:") })
            .split(separator: " ").count - 1
        let toplevelCost = narinfo.utf8.count + references * Int(CacheFetch.memoryPerReference)
        #expect(references >= 1)
        // The toplevel fits; b, the second level's only missing path, passes the limit.
        let limit = toplevelCost + 1
        let bName = String(b.dropFirst("/nix/store/".count).prefix(32))
        let refused = try await fleet.client(host, environment: ["FLEET_TEST_NARINFO_MEMORY_LIMIT": String(limit)])
        #expect(refused.exitCode == Self.failed, "\(refused.standardError)")
        #expect(
            refused.standardError.contains(
                "take more than \(ByteCount.exact(Int64(limit))) in memory (at cache/\(bName)): refused"),
            "\(refused.standardError)")
        #expect(try FileStatus.of(toplevel) == nil && (try FileStatus.of(b)) == nil, "nothing substituted")
        #expect(Self.localCacheFiles(fleet, host).isEmpty, "nothing written into the local cache")
        #expect(try fleet.state(host).applied == nil)

        let applied = try await fleet.client(host)
        #expect(applied.exitCode == Self.applied, "\(applied.standardError)")
        #expect(try fleet.state(host).applied?.system == toplevel)
    }

    /// Reports are read by servers and clients of other versions: a report without the cache object decodes
    /// (as nil), and one with it decodes where its fields are unknown.
    @Test func reportsWithAndWithoutTheCacheObjectDecode() throws {
        var report = RunReport(
            host: "cfetchjson", state: .applied, startedAt: "2026-12-05T07:00:00.000Z",
            finishedAt: "2026-12-05T07:01:00.000Z")
        report.durations.download = 1.5
        report.cache = RunReport.CacheTransfer(
            closurePaths: 1507, missingPaths: 54, filesFetched: 108, bytesFetched: 9_200_000, seconds: 1.3)
        #expect(report.cache?.summary == "fetched 54 of 1,507 paths (9.2 MB) in 1.3 s")
        let decoded = try JSONDecoder().decode(RunReport.self, from: Data(report.encoded()))
        #expect(decoded == report)

        var old = try #require(
            try JSONSerialization.jsonObject(with: Data(report.encoded())) as? [String: Any])
        old.removeValue(forKey: "cache")
        let fromOldClient = try JSONDecoder().decode(
            RunReport.self, from: try JSONSerialization.data(withJSONObject: old))
        #expect(fromOldClient.cache == nil && fromOldClient.durations.download == 1.5)

        /// What a server before the cache object decodes: the same fields, without `cache`.
        struct OldReport: Decodable {
            var host: String
            var state: RunOutcome
            var durations: RunReport.Durations
        }
        let byOldServer = try JSONDecoder().decode(OldReport.self, from: Data(report.encoded()))
        #expect(byOldServer.host == "cfetchjson" && byOldServer.durations.download == 1.5)
    }
}
