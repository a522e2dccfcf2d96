import BuildGate
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import Publishing
import ServerStore
import Testing

/// `fleet gc --verify`: the pool read in full against its narinfos, damage made again from the server's Nix store
/// for every host that links it, and a host's cache file that is not the pool's linked again.
extension CachePoolTests {
    /// What `fleet gc --verify --json` prints beside the collection.
    struct VerifyOutput: Decodable {
        var hosts: [CacheCollector.Report.HostRemoval]
        var verification: CacheVerifier.Report
        var collectionSkipped: String?
    }

    /// Two hosts sharing a path and a fleet whose pool is whole: `--verify` says so. Then the shared entry rots in
    /// place (one byte of its NAR, the same size: what a stat cannot see and a publish reuses): it is found, named
    /// with the hosts that link it, and made again, byte for byte, from the server's store; both hosts' links
    /// follow the new file, and no other entry is touched.
    @Test func gcVerifyMakesADamagedEntryAgainForEveryHostThatLinksIt() async throws {
        let nonce = UUID().uuidString
        let fixture = try Self.toyFleet(["pver-a", "pver-b"], extraToml: "[defaults]\ncache = true")
        defer { fixture.remove() }
        try fixture.write("hosts/pver-a/flake.nix", Self.flake(host: "pver-a", nonce: nonce, withExtra: true))
        try fixture.write("hosts/pver-b/flake.nix", Self.flake(host: "pver-b", nonce: nonce, withExtra: false))
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let pool = CachePool(chrootRoot: fixture.chrootRoot)
        let toplevelA = try #require(try fixture.verifiedManifest("pver-a").toplevel)
        let shared = try #require(try Self.storeClosure(of: toplevelA).first { $0.hasSuffix("-fleet-pool-shared") })
        let sharedHash = try Self.hash(shared)
        let entry = pool.entriesDirectory + "/" + sharedHash

        var output = try await fixture.fleet(["gc", "--verify"])
        #expect(output.exitCode == 0, "\(output.standardOutput)\(output.standardError)")
        #expect(output.standardOutput.contains("verified 4 entries") && output.standardOutput.contains("all whole"))

        let whole = try FileIO.read(entry)
        let others = try Self.entryInodes(pool).filter { $0.key != sharedHash }
        // A host removed from fleet.toml keeps its chroot, and its links: one to the shared entry, and the only
        // one to an entry no configured host needs (another path's bytes under its name: damaged too).
        let retired = fixture.chrootRoot + "/pver-retired/cache"
        try FileIO.createDirectories(retired)
        #expect(link(entry, retired + "/" + sharedHash) == 0)
        let orphan = String(repeating: "z", count: 32)
        try FileIO.writeAtomically(whole, to: pool.entriesDirectory + "/" + orphan, mode: 0o644)
        #expect(link(pool.entriesDirectory + "/" + orphan, retired + "/" + orphan) == 0)
        try CacheEntryFiles.overwrite(entry, at: whole.count - 1, with: [whole[whole.count - 1] ^ 0xff])
        let damaged = try #require(try FileStatus.of(entry))
        #expect(damaged.size == Int64(whole.count) && damaged.linkCount == 4)

        output = try await fixture.fleet(["gc", "--verify", "--json"])
        #expect(output.exitCode == 0, "\(output.standardOutput)\(output.standardError)")
        let report = try JSONDecoder().decode(VerifyOutput.self, from: Data(output.standardOutput.utf8)).verification
        #expect(report.entries == 5 && report.unlinked.isEmpty && report.failures.isEmpty)
        #expect(report.damaged.map(\.entry.name) == [sharedHash, orphan])
        let damage = try #require(report.damaged.first)
        #expect(damage.entry.storePath == shared)
        #expect(damage.entry.reason.contains("its NAR's SHA-256 is sha256:"), "\(damage.entry.reason)")
        #expect(damage.hosts == ["pver-a", "pver-b"] && damage.otherLinks == 1 && damage.repaired)
        let orphaned = try #require(report.damaged.last)
        #expect(orphaned.entry.reason.contains("its narinfo is of \(shared), not of a path named \(orphan)"))
        #expect(orphaned.hosts.isEmpty && orphaned.otherLinks == 1 && orphaned.repaired)
        #expect(try FileStatus.of(pool.entriesDirectory + "/" + orphan) == nil, "no configured host needs it: gone")
        // The retired host's links still name the damaged file (nothing of fleet.toml's hosts reads them).
        #expect(try FileStatus.of(retired + "/" + sharedHash)?.inode == damaged.inode)

        let remade = try #require(try FileStatus.of(entry))
        #expect(remade.inode != damaged.inode && remade.linkCount == 3)
        #expect(try FileIO.read(entry) == whole, "made again from the server's store, byte for byte")
        for host in ["pver-a", "pver-b"] {
            #expect(
                try FileStatus.of(try fixture.layout(host).cache + "/" + sharedHash)?.inode == remade.inode, "\(host)")
        }
        #expect(try Self.entryInodes(pool).filter { $0.key != sharedHash } == others, "no other entry touched")
        #expect(try FileIO.listDirectory(pool.entriesDirectory).count == 4, "nothing set aside is left")
        #expect(((try? FileIO.listDirectory(pool.directory + "/nar")) ?? []).isEmpty)

        output = try await fixture.fleet(["gc", "--verify"])
        #expect(output.exitCode == 0 && output.standardOutput.contains("all whole"), "\(output.standardOutput)")
    }

    /// Each kind of damage is named (an entry without a narinfo at its start, one cut short, one whose narinfo is
    /// another path's, a host's copy instead of a link). When the server cannot make them again (here its signing
    /// key is gone) nothing is lost: every damaged entry is put back where the next run finds it, and the run
    /// exits 1 naming each host. Once the key is back, the next run repairs all of it.
    @Test func gcVerifyNamesEachDamageAndKeepsItWhereTheNextRunFindsItWhenItCannotRepair() async throws {
        let nonce = UUID().uuidString
        let fixture = try Self.toyFleet(["pbad-a", "pbad-b"], extraToml: "[defaults]\ncache = true")
        defer { fixture.remove() }
        try fixture.write("hosts/pbad-a/flake.nix", Self.flake(host: "pbad-a", nonce: nonce, withExtra: true))
        try fixture.write("hosts/pbad-b/flake.nix", Self.flake(host: "pbad-b", nonce: nonce, withExtra: false))
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let pool = CachePool(chrootRoot: fixture.chrootRoot)
        let toplevelA = try #require(try fixture.verifiedManifest("pbad-a").toplevel)
        let toplevelB = try #require(try fixture.verifiedManifest("pbad-b").toplevel)
        let closureA = try Self.storeClosure(of: toplevelA)
        let shared = try #require(closureA.first { $0.hasSuffix("-fleet-pool-shared") })
        let extra = try #require(closureA.first { $0.hasSuffix("-fleet-pool-only-pbad-a") })
        let (hashA, hashB) = (try Self.hash(toplevelA), try Self.hash(toplevelB))
        let (sharedHash, extraHash) = (try Self.hash(shared), try Self.hash(extra))
        var originals: [String: [UInt8]] = [:]
        for hash in [hashA, hashB, sharedHash, extraHash] {
            originals[hash] = try FileIO.read(pool.entriesDirectory + "/" + hash)
        }

        // pbad-a's system: no empty line anywhere (same size). pbad-a's own path: one byte short. pbad-b's system:
        // its narinfo says it is the shared path (same length). pbad-b's cache: a copy of the shared entry.
        let entryA = pool.entriesDirectory + "/" + hashA
        try CacheEntryFiles.overwrite(
            entryA, at: 0, with: [UInt8](repeating: UInt8(ascii: "x"), count: originals[hashA]!.count))
        #expect(truncate(pool.entriesDirectory + "/" + extraHash, off_t(originals[extraHash]!.count - 1)) == 0)
        let entryB = pool.entriesDirectory + "/" + hashB
        let storePathLine = Array("StorePath: /nix/store/\(hashB)".utf8)
        let at = try #require(Self.offset(of: storePathLine, in: originals[hashB]!))
        try CacheEntryFiles.overwrite(entryB, at: at, with: Array("StorePath: /nix/store/\(sharedHash)".utf8))
        // The shared entry (which pbad-a links): a NarHash digit changed, same length, NAR intact: only the
        // fleet key's signature over what the narinfo describes tells.
        let narHashLine = Array("NarHash: sha256:".utf8)
        let narHashAt = try #require(Self.offset(of: narHashLine, in: originals[sharedHash]!)) + narHashLine.count
        let digit = originals[sharedHash]![narHashAt]
        try CacheEntryFiles.overwrite(
            pool.entriesDirectory + "/" + sharedHash, at: narHashAt,
            with: [digit == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")])
        let copyInB = try fixture.layout("pbad-b").cache + "/" + sharedHash
        _ = try FileIO.removeFile(copyInB)
        try FileIO.writeAtomically(originals[sharedHash]!, to: copyInB, mode: 0o644)
        let damagedInodes = try Self.entryInodes(pool)

        let key = fixture.stateDirectory + "/" + SigningKeyFile.secretName
        #expect(rename(key, key + ".away") == 0)
        var output = try await fixture.fleet(["gc", "--verify", "--json"])
        #expect(rename(key + ".away", key) == 0)
        #expect(output.exitCode == 1, "\(output.standardOutput)\(output.standardError)")
        let first = try JSONDecoder().decode(VerifyOutput.self, from: Data(output.standardOutput.utf8))
        // Nothing is collected while something is damaged: a collection reads the closures from the entries.
        #expect(first.hosts.isEmpty && first.collectionSkipped != nil)
        var report = first.verification
        let reasons = Dictionary(uniqueKeysWithValues: report.damaged.map { ($0.entry.name, $0.entry.reason) })
        #expect(Set(reasons.keys) == [hashA, hashB, extraHash, sharedHash], "\(reasons)")
        #expect(reasons[hashA]?.contains("does not start with a narinfo of at most 64 KiB") == true)
        #expect(reasons[extraHash]?.contains("(cut or grown)") == true, "\(reasons[extraHash] ?? "")")
        #expect(
            reasons[hashB]?.contains("its narinfo is of /nix/store/\(sharedHash)") == true, "\(reasons[hashB] ?? "")")
        #expect(reasons[sharedHash]?.contains("carries no signature of the fleet key") == true)
        #expect(report.damaged.allSatisfy { !$0.repaired })
        #expect(report.unlinked.map(\.host) == ["pbad-b"] && report.unlinked.first?.names == [sharedHash])
        #expect(report.unlinked.allSatisfy { !$0.relinked })
        #expect(Set(report.failures.map(\.host)) == ["pbad-a", "pbad-b"])
        #expect(
            report.failures.allSatisfy { $0.reason.contains("its cache cannot be made again") }, "\(report.failures)")
        // Put back, every one, with its pool narinfo (so the narinfo-only damage is found again): same inodes,
        // nothing set aside left, the hosts' names still there.
        for hash in [hashA, hashB, extraHash, sharedHash] {
            #expect(try FileStatus.of(pool.directory + "/" + hash + ".narinfo") != nil, "\(hash).narinfo")
        }
        // Put back, every one: same inodes, nothing set aside left, the hosts' names still there.
        #expect(try Self.entryInodes(pool) == damagedInodes)
        #expect(try FileIO.listDirectory(pool.entriesDirectory).count == 4)
        #expect(try FileStatus.of(try fixture.layout("pbad-a").cache + "/" + hashA)?.inode == damagedInodes[hashA])

        output = try await fixture.fleet(["gc", "--verify"])
        #expect(output.exitCode == 0, "\(output.standardOutput)\(output.standardError)")
        #expect(
            output.standardOutput.contains(
                "4 damaged, 4 repaired; 1 cache(s) with names missing or unlinked, 1 linked again"),
            "\(output.standardOutput)")
        #expect(output.standardOutput.contains("pbad-b: 1 name(s) of its cache were missing or not links"))
        #expect(!output.standardOutput.contains("NOT"))
        for (hash, bytes) in originals {
            #expect(try FileIO.read(pool.entriesDirectory + "/" + hash) == bytes, "\(hash) made again as it was")
        }
        let inodes = try Self.entryInodes(pool)
        for host in ["pbad-a", "pbad-b"] {
            let cache = BinaryCache(directory: try fixture.layout(host).cache)
            #expect(pool.strays(in: cache).isEmpty, "\(host)")
            let closure = pool.closureNames(
                of: try fixture.verifiedManifest(host).toplevel ?? "", references: PoolReferences(pool))
            #expect(closure.unreadable.isEmpty && closure.names.isSubset(of: cache.storePathHashes()), "\(host)")
            for hash in cache.storePathHashes() {
                #expect(try FileStatus.of(cache.directory + "/" + hash)?.inode == inodes[hash], "\(host) \(hash)")
            }
        }
        report = try JSONDecoder().decode(
            VerifyOutput.self, from: Data(try await fixture.fleet(["gc", "--verify", "--json"]).standardOutput.utf8)
        ).verification
        #expect(report.entries == 4 && report.damaged.isEmpty && report.unlinked.isEmpty && report.isWhole)
    }

    /// A publish whose collection meets a served system's entry with no narinfo at its start (damaged in place)
    /// cannot know what lies below it: it removes nothing from that host's cache and warns, naming the file and
    /// `fleet gc --verify`, where it used to remove every link below and let the pool drop their entries.
    @Test func aPublishDoesNotCollectBelowAnEntryItCannotRead() async throws {
        let nonce = UUID().uuidString
        let fixture = try Self.toyFleet(["punread"], extraToml: "[defaults]\ncache = true")
        defer { fixture.remove() }
        try fixture.write("hosts/punread/flake.nix", Self.flake(host: "punread", nonce: nonce, withExtra: true))
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let pool = CachePool(chrootRoot: fixture.chrootRoot)
        let toplevel = try #require(try fixture.verifiedManifest("punread").toplevel)
        let cache = BinaryCache(directory: try fixture.layout("punread").cache)
        let names = cache.storePathHashes()
        #expect(names.count == 3)
        let entry = pool.entriesDirectory + "/" + (try Self.hash(toplevel))
        let size = Int(try #require(try FileStatus.of(entry)).size)
        try CacheEntryFiles.overwrite(entry, at: 0, with: [UInt8](repeating: UInt8(ascii: "x"), count: size))

        try fixture.write("secrets/punread/token", "a secret\n", mode: 0o600)
        let output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0, "\(output.standardOutput)\(output.standardError)")
        #expect(try fixture.verifiedManifest("punread").generation == 2)
        // The host's warning, in its row's NOTE.
        let file = cache.directory + "/" + (try Self.hash(toplevel))
        #expect(
            output.standardOutput.contains(file) && output.standardOutput.contains("nothing was removed from it"),
            "\(output.standardOutput)")
        #expect(cache.storePathHashes() == names, "every link kept")
        #expect(pool.storePathHashes() == names, "and every entry of the pool")
    }

    /// The inode of every entry in the pool, by name.
    static func entryInodes(_ pool: CachePool) throws -> [String: UInt64] {
        var inodes: [String: UInt64] = [:]
        for name in try FileIO.listDirectory(pool.entriesDirectory) {
            inodes[name] = try #require(try FileStatus.of(pool.entriesDirectory + "/" + name)).inode
        }
        return inodes
    }

    static func offset(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }
}
