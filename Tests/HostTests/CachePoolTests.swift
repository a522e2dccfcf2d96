import BuildGate
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Glibc
import NixKit
import Publishing
import ServerStore
import Testing

/// The server's one binary-cache pool (`<chroot_root>/.cache-pool`) and the hosts' caches of hard links into
/// it, with the real Nix and, for isolation, a real sshd (see ``ClientRunSuite`` for what the suites share).
/// Every host name here is this suite's alone.
@Suite("One binary-cache pool per server, each host's cache its closures' links", .serialized)
struct CachePoolTests: ClientRunSuite {
    @Test func twoHostsSharingAClosureShareThePoolsFilesAndEachSeesOnlyItsOwn() async throws {
        let nonce = UUID().uuidString
        let fleet = try await ClientFleet.start(hosts: ["pshare-a", "pshare-b"]) { fixture in
            try Self.enableCaches(fixture)
            try fixture.write("hosts/pshare-a/flake.nix", Self.flake(host: "pshare-a", nonce: nonce, withExtra: true))
            try fixture.write("hosts/pshare-b/flake.nix", Self.flake(host: "pshare-b", nonce: nonce, withExtra: false))
        }
        defer { fleet.stop() }
        let root = fleet.fixture.chrootRoot
        let pool = CachePool(chrootRoot: root)
        let poolStatus = try #require(try FileStatus.of(pool.directory))
        #expect(poolStatus.permissions == 0o700 && poolStatus.owner == 0 && poolStatus.group == 0)
        let (toplevelA, toplevelB) = (
            try #require(try fleet.manifest("pshare-a").toplevel), try #require(try fleet.manifest("pshare-b").toplevel)
        )
        let shared = try Self.storeClosure(of: toplevelA).first { $0.hasSuffix("-fleet-pool-shared") }
        let extra = try Self.storeClosure(of: toplevelA).first { $0.hasSuffix("-fleet-pool-only-pshare-a") }
        let (sharedHash, extraHash) = (try Self.hash(try #require(shared)), try Self.hash(try #require(extra)))
        #expect(try Self.storeClosure(of: toplevelB).contains(try #require(shared)))

        let cacheA = BinaryCache(directory: try fleet.layout("pshare-a").cache)
        let cacheB = BinaryCache(directory: try fleet.layout("pshare-b").cache)
        #expect(cacheA.storePathHashes() == [try Self.hash(toplevelA), sharedHash, extraHash])
        #expect(cacheB.storePathHashes() == [try Self.hash(toplevelB), sharedHash], "nothing of pshare-a's alone")
        #expect(pool.storePathHashes() == cacheA.storePathHashes().union(cacheB.storePathHashes()))

        // The shared path's entry: one inode, three names (the pool's and each host's).
        let inPool = try #require(try FileStatus.of(pool.entriesDirectory + "/" + sharedHash))
        #expect(inPool.linkCount == 3 && inPool.owner == 0 && inPool.permissions == 0o644)
        for cache in [cacheA, cacheB] {
            let inCache = try #require(try FileStatus.of(cache.directory + "/" + sharedHash))
            #expect(inCache.inode == inPool.inode && inCache.device == inPool.device, "\(cache.directory)")
            #expect(Set(try FileIO.listDirectory(cache.directory)) == cache.storePathHashes(), "entries only")
        }
        // The entry is the pool's narinfo, an empty line, the NAR; the NAR file itself is gone from the pool.
        let (sharedNarinfo, sharedNar) = try CacheEntryFiles.parts(pool.entriesDirectory + "/" + sharedHash)
        #expect(Array(sharedNarinfo.utf8) == (try FileIO.read(pool.directory + "/" + sharedHash + ".narinfo")))
        let narFile = try NarInfo(parsing: Array(sharedNarinfo.utf8), name: sharedHash).narFile
        #expect(
            narFile.hasSuffix(".nar.zst") && Int64(sharedNar.count) == inPool.size - Int64(sharedNarinfo.utf8.count) - 1
        )
        #expect(((try? FileIO.listDirectory(pool.directory + "/nar")) ?? []).isEmpty, "no NAR kept twice")
        #expect(try FileStatus.of(cacheB.directory + "/" + extraHash) == nil)

        // du counts each inode once: the chroot root is smaller by every extra name of a shared file.
        let once = try Self.du(root, countingLinks: false)
        let everyName = try Self.du(root, countingLinks: true)
        var namesPerInode: [UInt64: (size: Int64, names: Int64)] = [:]
        try Self.walkFiles(root) { status in
            namesPerInode[status.inode, default: (status.size, 0)].names += 1
        }
        let duplicated = namesPerInode.values.reduce(0) { $0 + $1.size * ($1.names - 1) }
        #expect(everyName - once == duplicated && duplicated >= 2 * inPool.size, "\(once) \(everyName)")

        // Over the real sshd, pshare-b reads the shared path through its link, and cannot reach pshare-a's
        // path by any name: not in its cache, not in the pool, not in pshare-a's chroot.
        let download = try TestDirectory.makeTemporary()
        defer { download.remove() }
        var output = try await Self.sftpGet(fleet, as: "pshare-b", "/cache/\(sharedHash)", download.path("shared"))
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(try download.readFile("shared") == FileIO.read(pool.entriesDirectory + "/" + sharedHash))
        for path in [
            "/cache/\(extraHash)", "/../\(ChrootLayout.cachePoolName)/entries/\(extraHash)",
            "/../\(ChrootLayout.cachePoolName)/\(extraHash).narinfo", "/../pshare-a/cache/\(extraHash)",
        ] {
            output = try await Self.sftpGet(fleet, as: "pshare-b", path, download.path("stolen"))
            #expect(output.exitCode != 0, "pshare-b fetched \(path)")
            #expect(try FileStatus.of(download.path("stolen")) == nil)
        }
    }

    /// An older fleet's cache, a Nix binary cache of the host's own (narinfo and NAR files, `nix-cache-info`),
    /// becomes the pool's entries at the next publish, even with the host unchanged (it is not published again,
    /// and its manifest names the cache), and nothing of it is left.
    @Test func aCacheWrittenByAnOlderFleetBecomesThePoolsEntriesAtTheNextPublish() async throws {
        let fixture = try Self.toyFleet(["plegacy"], extraToml: "[defaults]\ncache = true")
        defer { fixture.remove() }
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let toplevel = try #require(try fixture.verifiedManifest("plegacy").toplevel)
        let cache = BinaryCache(directory: try fixture.layout("plegacy").cache)
        let pool = CachePool(chrootRoot: fixture.chrootRoot)
        let entries = Set(try Self.storeClosure(of: toplevel).map { try Self.hash($0) })

        // What the older fleet did: `nix copy` into the host's own cache, real files of its own.
        try FileIO.removeTree(cache.directory)
        let key = fixture.stateDirectory + "/" + SigningKeyFile.secretName
        let copy = try TestCommand.run(
            "/usr/bin/nix",
            Nix.flakeFlags + ["copy", "--to", "file://\(cache.directory)?secret-key=\(key)&compression=zstd", toplevel])
        #expect(copy.succeeded, "\(copy.standardError)")
        #expect(try FileStatus.of(cache.directory + "/" + (try Self.hash(toplevel)) + ".narinfo") != nil)
        #expect(!cache.hasEntry(of: toplevel))

        // Nothing changed: the host stays at generation 1, and its cache is made again.
        var output = try await fixture.fleet(["publish", "--json"])
        #expect(output.exitCode == 0, "\(output.standardOutput)\(output.standardError)")
        #expect(output.standardOutput.contains("made the cache of \(toplevel) again"), "\(output.standardOutput)")
        #expect(try fixture.verifiedManifest("plegacy").generation == 1)
        for hash in entries {
            let linked = try #require(try FileStatus.of(cache.directory + "/" + hash))
            let poolFile = try #require(try FileStatus.of(pool.entriesDirectory + "/" + hash))
            #expect(linked.inode == poolFile.inode && linked.linkCount == 2, "\(hash) is the pool's")
            #expect(linked.owner == 0 && linked.permissions == 0o644)
        }
        #expect(Set(try FileIO.listDirectory(cache.directory)) == entries, "nothing of the older fleet is left")

        // And the next publish finds it whole: no warning.
        output = try await fixture.fleet(["publish", "--json"])
        #expect(output.exitCode == 0 && !output.standardOutput.contains("again"), "\(output.standardOutput)")
    }

    /// What is planted in the pool is not followed by its collection: `entries/` replaced by a link to another
    /// directory loses nothing there; a temporary file an interrupted entry left goes.
    @Test func thePoolsCollectionFollowsNoLinkAndRemovesLeftTemporaries() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let pool = CachePool(directory: directory.path("pool"))
        try FileIO.createDirectories(pool.entriesDirectory)
        let temporary =
            pool.entriesDirectory + "/" + FileIO.temporaryPrefix + "4242-" + String(repeating: "0", count: 32)
        try FileIO.writeAtomically(Array("cut".utf8), to: temporary)
        #expect(
            pool.collect().names == ["entries/" + FileIO.temporaryPrefix + "4242-" + String(repeating: "0", count: 32)])
        #expect(try FileStatus.of(temporary) == nil)

        try FileIO.createDirectories(directory.path("elsewhere"))
        try directory.writeFile("elsewhere/kept", text: "kept")
        try FileIO.removeTree(pool.entriesDirectory)
        #expect(symlink(directory.path("elsewhere"), pool.entriesDirectory) == 0)
        try FileIO.createDirectories(pool.directory + "/nar")
        try FileIO.removeTree(pool.directory + "/nar")
        #expect(symlink(directory.path("elsewhere"), pool.directory + "/nar") == 0)
        #expect(pool.collect().names.isEmpty)
        #expect(try directory.readFile("elsewhere/kept") == Array("kept".utf8))
    }

    /// An entry cut short (a crash before its data reached the disk, on a filesystem that keeps the name) is
    /// found by its size at the next publish that needs it, copied again from the server's store and linked anew.
    @Test func anEntryCutShortIsMadeAgainAtTheNextPublish() async throws {
        let fixture = try Self.toyFleet(["pcut"], extraToml: "[defaults]\ncache = true")
        defer { fixture.remove() }
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let toplevel = try #require(try fixture.verifiedManifest("pcut").toplevel)
        let pool = CachePool(chrootRoot: fixture.chrootRoot)
        let cache = try fixture.layout("pcut").cache
        let entry = pool.entriesDirectory + "/" + (try Self.hash(toplevel))
        let whole = try FileIO.readNoFollow(entry, limit: 1 << 20)
        #expect(truncate(entry, off_t(whole.count / 2)) == 0)
        let cut = try #require(try FileStatus.of(entry))

        try fixture.write("secrets/pcut/token", "a secret\n", mode: 0o600)
        let output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0, "\(output.standardOutput)\(output.standardError)")
        #expect(try fixture.verifiedManifest("pcut").generation == 2)
        let remade = try #require(try FileStatus.of(entry))
        #expect(remade.inode != cut.inode && remade.size == Int64(whole.count), "made again, whole")
        let (narinfo, nar) = try CacheEntryFiles.parts(entry)
        let info = try NarInfo(parsing: Array(narinfo.utf8), name: entry)
        #expect(info.fileSize == Int64(nar.count) && info.storePath == toplevel)
        #expect(try FileStatus.of(cache + "/" + (try Self.hash(toplevel)))?.inode == remade.inode, "linked anew")
        #expect(((try? FileIO.listDirectory(pool.directory + "/nar")) ?? []).isEmpty, "its NAR is in the entry only")
    }

    @Test func thePoolKeepsOnlyTheFleetKeysSignatureOfPathsTheServersStoreSignedWithOthers() async throws {
        let nonce = UUID().uuidString
        let fixture = try Self.toyFleet(["psigs"], extraToml: "[defaults]\ncache = true")
        defer { fixture.remove() }
        try fixture.write("hosts/psigs/flake.nix", Self.flake(host: "psigs", nonce: nonce, withExtra: true))
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let toplevel = try #require(try fixture.verifiedManifest("psigs").toplevel)
        let fleetKey = try VerifyingKey(
            nixFormat: try String(
                contentsOfFile: fixture.stateDirectory + "/" + SigningKeyFile.publicName, encoding: .utf8))

        // The server's store signs the closure with two more keys: one by the fleet key's name (what a new
        // `fleet init` makes) and another cache's.
        let keys = try TestDirectory.makeTemporary()
        defer { keys.remove() }
        for name in [fleetKey.name, "other-cache-1"] {
            let secret = try TestCommand.run(
                "/usr/bin/nix", Nix.flakeFlags + ["key", "generate-secret", "--key-name", name])
            try keys.writeFile(name, text: secret.standardOutput)
            let sign = try TestCommand.run(
                "/usr/bin/nix", Nix.flakeFlags + ["store", "sign", "--key-file", keys.path(name), "-r", toplevel])
            #expect(sign.succeeded, "\(sign.standardError)")
        }
        let pathInfo = try TestCommand.run("/usr/bin/nix", Nix.flakeFlags + ["path-info", "--sigs", toplevel])
        #expect(
            pathInfo.standardOutput.contains(" \(fleetKey.name):")
                && pathInfo.standardOutput.contains(" other-cache-1:"),
            "\(pathInfo.standardOutput)")

        // The next publish copies the closure into a pool that lacks it.
        let pool = CachePool(chrootRoot: fixture.chrootRoot)
        try FileIO.removeTree(pool.directory)
        try FileIO.removeTree(try fixture.layout("psigs").cache)
        try fixture.write("secrets/psigs/token", "a secret\n", mode: 0o600)
        let output = try await fixture.fleet(["publish"])
        #expect(output.exitCode == 0, "\(output.standardOutput)\(output.standardError)")
        #expect(try fixture.verifiedManifest("psigs").generation == 2)

        let hashes = try Self.storeClosure(of: toplevel).map { try Self.hash($0) }
        #expect(pool.storePathHashes() == Set(hashes))
        for hash in hashes {
            let text = try String(contentsOfFile: pool.directory + "/\(hash).narinfo", encoding: .utf8)
            let signatures = text.split(separator: "\n").filter { $0.hasPrefix("Sig: ") }
            #expect(signatures.count == 1 && signatures[0].hasPrefix("Sig: \(fleetKey.name):"), "\(text)")
            #expect(try CacheEntryFiles.narinfo(pool.entriesDirectory + "/" + hash) == text, "the entry's narinfo too")
        }
        // Nix itself finds the one signature left the fleet key's, and not another key's of the same name.
        func verify(trusting key: String) throws -> TestCommand.Output {
            try TestCommand.run(
                "/usr/bin/nix",
                Nix.flakeFlags + [
                    "store", "verify", "--store", "file://\(pool.directory)", "--no-contents", "-r", toplevel,
                    "--option", "trusted-public-keys", key,
                ])
        }
        let trusted = try verify(trusting: fleetKey.nixFormat)
        #expect(trusted.succeeded, "\(trusted.standardError)")
        let impostor = try await Command.run(
            "/usr/bin/nix", Nix.flakeFlags + ["key", "convert-secret-to-public"],
            input: String(decoding: try keys.readFile(fleetKey.name), as: UTF8.self))
        #expect(
            !(try verify(trusting: impostor.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines))).succeeded)

        // Hostile narinfos: forged signatures by the fleet key's name are dropped; none of the fleet key's is
        // refused, naming the file.
        let narinfo = pool.directory + "/\(try Self.hash(toplevel)).narinfo"
        let original = try String(contentsOfFile: narinfo, encoding: .utf8)
        let forged = "Sig: \(fleetKey.name):" + Data(repeating: 7, count: 64).base64EncodedString() + "\n"
        let other = "Sig: other-cache-1:" + Data(repeating: 9, count: 64).base64EncodedString() + "\n"
        #expect(try NarInfoSignatures.keepingOnly(fleetKey, in: original + forged + other, name: narinfo) == original)
        #expect(try NarInfoSignatures.keepingOnly(fleetKey, in: original, name: narinfo) == nil)
        let unsigned = original.split(separator: "\n").filter { !$0.hasPrefix("Sig: ") }.joined(separator: "\n")
        for hostile in [unsigned + "\n" + forged + other, unsigned + "\n" + other] {
            #expect {
                _ = try NarInfoSignatures.keepingOnly(fleetKey, in: hostile, name: narinfo)
            } throws: { error in
                "\(error)".contains(narinfo) && "\(error)".contains(fleetKey.name)
            }
        }
    }

    @Test func collectionKeepsWhatAServedGenerationOfAnyHostNeedsAndRemovesTheRest() async throws {
        let nonce = UUID().uuidString
        let fixture = try Self.toyFleet(["pgc-a", "pgc-b"], extraToml: "[defaults]\ncache = true")
        defer { fixture.remove() }
        try fixture.write(
            "fleet.toml",
            try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                .replacingOccurrences(of: "[server]\n", with: "[server]\nsnapshot_grace_seconds = 100\n"))
        try fixture.write("hosts/pgc-a/flake.nix", Self.flake(host: "pgc-a", nonce: nonce, withExtra: true))
        try fixture.write("hosts/pgc-b/flake.nix", Self.flake(host: "pgc-b", nonce: nonce, withExtra: false))
        let pool = CachePool(chrootRoot: fixture.chrootRoot)

        #expect(try await fixture.fleet(["publish", "pgc-a"]).exitCode == 0)
        let firstA = try #require(try fixture.verifiedManifest("pgc-a").toplevel)
        let closureA = try Self.storeClosure(of: firstA)
        let sharedHash = try Self.hash(try #require(closureA.first { $0.hasSuffix("-fleet-pool-shared") }))
        let extraHash = try Self.hash(try #require(closureA.first { $0.hasSuffix("-fleet-pool-only-pgc-a") }))
        let sharedEntry = pool.entriesDirectory + "/" + sharedHash
        let before = try #require(try FileStatus.of(sharedEntry))
        #expect(before.linkCount == 2)

        // The second host's publish links the shared entry: the pool's file is neither copied nor compressed again.
        #expect(try await fixture.fleet(["publish", "pgc-b"]).exitCode == 0)
        let toplevelB = try #require(try fixture.verifiedManifest("pgc-b").toplevel)
        let after = try #require(try FileStatus.of(sharedEntry))
        #expect(after.inode == before.inode && after.linkCount == 3)
        #expect(
            after.modificationSeconds == before.modificationSeconds
                && after.modificationNanoseconds == before.modificationNanoseconds)

        // pgc-a's second system drops its extra path; its first generation is in its grace period, so the extra
        // path stays, in pgc-a's cache and in the pool.
        try fixture.write("hosts/pgc-a/flake.nix", Self.flake(host: "pgc-a", nonce: nonce, withExtra: false))
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let secondA = try #require(try fixture.verifiedManifest("pgc-a").toplevel)
        let secondClosure = try Self.storeClosure(of: secondA)
        #expect(secondA != firstA && !secondClosure.contains { $0.contains("-fleet-pool-only-") })
        #expect(pool.storePathHashes().contains(extraHash))

        // Garbage `fleet gc` finds: a path in the pool that no host links (as a host whose cache failed after
        // its copy leaves), and files in pgc-b's cache that none of its systems needs.
        let stray = try TestCommand.run("/usr/bin/nix-store", ["--add", fixture.repository + "/fleet.toml"])
        let strayPath = stray.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        try Self.copy(strayPath, into: pool, signedFor: fixture)
        let cacheB = try fixture.layout("pgc-b").cache
        try FileIO.writeAtomically(
            Array("URL: nar/stray.nar.zst\n\nstray".utf8), to: cacheB + "/\(String(repeating: "0", count: 32))")
        try FileIO.createDirectories(cacheB + "/nar")
        try FileIO.writeAtomically(Array("stray".utf8), to: cacheB + "/nar/stray.nar.zst")

        var output = try await fixture.fleet(["gc", "--json"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        var report = try JSONDecoder().decode(CacheCollector.Report.self, from: Data(output.standardOutput.utf8))
        #expect(report.hosts.map(\.host) == ["pgc-a", "pgc-b"])
        #expect(report.hosts[0].removed.files == 0, "pgc-a's first generation is still served")
        #expect(
            report.hosts[1].removed.names.sorted() == [
                "\(String(repeating: "0", count: 32))", "nar/stray.nar.zst",
            ]
                && report.hosts[1].removed.bytes > 0)
        let strayHash = try Self.hash(strayPath)
        #expect(report.pool.files == 2 && report.pool.names.contains(strayHash + ".narinfo"), "\(report.pool)")
        #expect(
            pool.storePathHashes() == [
                try Self.hash(firstA), try Self.hash(secondA), try Self.hash(toplevelB), sharedHash, extraHash,
            ])
        #expect(try FileIO.listDirectory(pool.entriesDirectory).count == 5)
        #expect(try FileIO.listDirectory(pool.directory + "/nar").isEmpty)
        #expect(try FileStatus.of(cacheB + "/nar") == nil)
        output = try await fixture.fleet(["gc"])
        #expect(output.exitCode == 0 && output.standardOutput.contains("removed 0 files"), "\(output.standardOutput)")

        // Past the grace period (fleet's clock moved instead of waiting), the next publish removes the first
        // snapshot, then pgc-a's links to its system, then the pool's files no host links any more.
        #expect(
            try await fixture.fleet(["publish"], environment: ["FLEET_TEST_CLOCK_OFFSET_SECONDS": "200"]).exitCode == 0)
        #expect(try FileStatus.of(try fixture.layout("pgc-a").snapshot(1)) == nil)
        let kept: Set<String> = [try Self.hash(secondA), try Self.hash(toplevelB), sharedHash]
        #expect(pool.storePathHashes() == kept)
        #expect(try FileIO.listDirectory(pool.entriesDirectory).count == 3)
        #expect(try FileIO.listDirectory(pool.directory).filter { $0.hasSuffix(".narinfo") }.count == 3)
        #expect(
            BinaryCache(directory: try fixture.layout("pgc-a").cache).storePathHashes() == [
                try Self.hash(secondA), sharedHash,
            ])
        #expect(try FileStatus.of(sharedEntry)?.inode == before.inode, "the shared entry was never rewritten")

        // Nothing left to collect.
        output = try await fixture.fleet(["gc", "--json"])
        report = try JSONDecoder().decode(CacheCollector.Report.self, from: Data(output.standardOutput.utf8))
        #expect(output.exitCode == 0 && report.pool.files == 0 && report.hosts.allSatisfy { $0.removed.files == 0 })
    }

    @Test func gcOnAFleetWithoutCachesRemovesNothingAndWaitsForNoPublish() async throws {
        let fixture = try Self.toyFleet(["pnocache"], extraToml: "")
        defer { fixture.remove() }
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let before = try fixture.chrootListing()
        var output = try await fixture.fleet(["gc", "--json"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let report = try JSONDecoder().decode(CacheCollector.Report.self, from: Data(output.standardOutput.utf8))
        #expect(report.hosts.isEmpty && report.pool.files == 0 && report.pool.bytes == 0)
        #expect(try fixture.chrootListing() == before)

        // It takes the publish lock: while a publish holds it, gc refuses and removes nothing.
        let lock = try Publisher.lock(stateDirectory: fixture.stateDirectory)
        output = try await fixture.fleet(["gc"])
        withExtendedLifetime(lock) {}
        #expect(output.exitCode == 1 && output.standardError.contains("publish.lock"), "\(output.standardError)")
    }

    /// A host's chroot on a filesystem of its own (a tmpfs mounted at `<chroot_root>/<host>`): `fleet setup`
    /// says so, and a publish fails that host's cache naming both paths, without copying anything.
    @Test func aChrootOnAnotherFilesystemIsNamedBySetupAndItsCacheFailsWithoutACopy() async throws {
        let prefix = "fp" + String(UUID().uuidString.lowercased().filter(\.isLetter).prefix(4)) + "-"
        let fixture = try FleetFixture(hosts: [], rootOwned: true, serverToml: "user_prefix = \"\(prefix)\"")
        defer { fixture.remove() }
        try fixture.write("common/toy-nixos.nix", ClientFleet.toyNixOS)
        var toml = try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
        for host in ["pmount-cached", "pmount-plain"] {
            try ClientFleet.addToyHost(host, to: fixture)
            toml += "[hosts.\(host)]\nkey = \"\(KeyPair.publicLine(forHost: host))\"\n"
        }
        try fixture.write(
            "fleet.toml",
            toml.replacingOccurrences(of: "[hosts.pmount-cached]\n", with: "[hosts.pmount-cached]\ncache = true\n"))
        defer {
            for host in ["pmount-cached", "pmount-plain"] {
                _ = try? TestCommand.run("/usr/sbin/userdel", [prefix + host])
                _ = try? TestCommand.run("/usr/sbin/groupdel", [prefix + host])
            }
        }
        var mounts: [String] = []
        defer {
            for mount in mounts { _ = try? TestCommand.run("/bin/umount", [mount]) }
        }
        for host in ["pmount-cached", "pmount-plain"] {
            let directory = try fixture.layout(host).directory
            try FileIO.createDirectories(directory)
            let mount = try TestCommand.run("/bin/mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", directory])
            try #require(mount.succeeded, "\(mount.standardError)")
            mounts.append(directory)
        }

        var output = try await fixture.fleet(["setup", "--json"])
        #expect(output.exitCode == 1, "\(output.standardOutput)")
        let setup = try JSONDecoder().decode(ServerSetupReport.self, from: Data(output.standardOutput.utf8))
        let cached = try #require(setup.hosts.first { $0.host == "pmount-cached" })
        let pool = CachePool(chrootRoot: fixture.chrootRoot).directory
        let chroot = try fixture.layout("pmount-cached").directory
        #expect(cached.status == "refused", "\(cached)")
        #expect(
            cached.problem?.contains("\(chroot) is on another filesystem") == true
                && cached.problem?.contains(pool) == true)
        #expect(setup.hosts.first { $0.host == "pmount-plain" }?.status != "refused")
        let plainChroot = try fixture.layout("pmount-plain").directory
        #expect(
            setup.warnings.contains { $0.contains(plainChroot) && $0.contains("cache = true") }, "\(setup.warnings)")

        output = try await fixture.fleet(["publish", "--json"])
        #expect(output.exitCode == 1)
        let rows = try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [[String: Any]] ?? []
        let row = try #require(rows.first { $0["host"] as? String == "pmount-cached" }, "\(output.standardOutput)")
        let reason = row["reason"] as? String ?? ""
        #expect(row["status"] as? String == "build-failed", "\(row)")
        #expect(
            reason.contains("cannot hard-link") && reason.contains(pool + "/") && reason.contains(chroot + "/cache/"),
            "\(reason)")
        #expect(rows.first { $0["host"] as? String == "pmount-plain" }?["status"] as? String == "published")
        let cache = try fixture.layout("pmount-cached").cache
        #expect(((try? FileIO.listDirectory(cache)) ?? []).isEmpty, "nothing copied instead")
        #expect(try FileStatus.of(try fixture.layout("pmount-cached").manifest) == nil, "not published")
    }

    /// Something in the way (a directory where a host's link goes) or a pool file that is not a regular file
    /// (a symbolic link planted in the pool): that host's cache fails naming the paths, its generation stays,
    /// nothing planted is followed or lost, and the other host is unaffected.
    @Test func whatIsNotARegularFileInThePoolOrInTheWayFailsOnlyThatHostsCache() async throws {
        let fixture = try Self.toyFleet(["phostile-a", "phostile-b"], extraToml: "[defaults]\ncache = true")
        defer { fixture.remove() }
        let elsewhere = try TestDirectory.makeTemporary()
        defer { elsewhere.remove() }
        #expect(try await fixture.fleet(["publish"]).exitCode == 0)
        let firstA = try #require(try fixture.verifiedManifest("phostile-a").toplevel)
        let pool = CachePool(chrootRoot: fixture.chrootRoot)
        let cacheA = BinaryCache(directory: try fixture.layout("phostile-a").cache)

        // phostile-a's next system: a directory with a file in it where its entry's link would go.
        try fixture.write("hosts/phostile-a/configuration.nix", "{ motd = [ \"a, second\" ]; }\n")
        try fixture.write("hosts/phostile-b/configuration.nix", "{ motd = [ \"b, second\" ]; }\n")
        let built = try await fixture.fleet(["build", "--json"])
        let builds =
            try #require(
                try JSONSerialization.jsonObject(with: Data(built.standardOutput.utf8)) as? [String: Any])["builds"]
            as? [[String: Any]]
        let secondA = try #require(builds?.first { $0["host"] as? String == "phostile-a" }?["toplevel"] as? String)
        let secondB = try #require(builds?.first { $0["host"] as? String == "phostile-b" }?["toplevel"] as? String)
        let inTheWay = cacheA.directory + "/" + (try Self.hash(secondA))
        try FileIO.createDirectories(inTheWay)
        try FileIO.writeAtomically(Array("kept".utf8), to: inTheWay + "/planted")

        // phostile-b's next system in the pool, its narinfo replaced by a link to a copy outside the pool.
        try Self.copy(secondB, into: pool, signedFor: fixture)
        let poolNarInfo = pool.directory + "/" + (try Self.hash(secondB)) + ".narinfo"
        try elsewhere.writeFile("narinfo", try FileIO.read(poolNarInfo))
        try FileIO.removeFile(poolNarInfo)
        #expect(symlink(elsewhere.path("narinfo"), poolNarInfo) == 0)

        let output = try await fixture.fleet(["publish", "--json"])
        #expect(output.exitCode == 1)
        let rows = try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [[String: Any]] ?? []
        let rowA = try #require(rows.first { $0["host"] as? String == "phostile-a" }, "\(output.standardOutput)")
        let reasonA = rowA["reason"] as? String ?? ""
        #expect(rowA["status"] as? String == "build-failed" && rowA["generation"] as? Int == 1, "\(rowA)")
        #expect(reasonA.contains("cannot hard-link") && reasonA.contains(inTheWay), "\(reasonA)")
        #expect(reasonA.contains(pool.entriesDirectory + "/" + (try Self.hash(secondA))), "\(reasonA)")
        #expect(try FileIO.read(inTheWay + "/planted") == Array("kept".utf8), "nothing planted is lost")
        #expect(cacheA.storePathHashes().contains(try Self.hash(firstA)), "the served generation keeps its cache")
        #expect(try fixture.verifiedManifest("phostile-a").toplevel == firstA)

        let rowB = try #require(rows.first { $0["host"] as? String == "phostile-b" })
        let reasonB = rowB["reason"] as? String ?? ""
        #expect(rowB["status"] as? String == "build-failed" && rowB["generation"] as? Int == 1, "\(rowB)")
        #expect(reasonB.contains(poolNarInfo) && reasonB.contains("symbolic link"), "\(reasonB)")
        let cacheB = BinaryCache(directory: try fixture.layout("phostile-b").cache)
        #expect(!cacheB.storePathHashes().contains(try Self.hash(secondB)), "nothing is linked through the link")
        #expect(try FileStatus.of(poolNarInfo)?.kind == .symbolicLink && (try elsewhere.readFile("narinfo")).count > 0)
    }

    // MARK: - Helpers

    /// What `fleet setup --json` prints.
    struct ServerSetupReport: Decodable {
        struct Host: Decodable {
            var host: String
            var status: String
            var problem: String?
        }

        var hosts: [Host]
        var warnings: [String]
    }

    static func enableCaches(_ fixture: FleetFixture) throws {
        try fixture.write(
            "fleet.toml",
            try String(contentsOfFile: fixture.repository + "/fleet.toml", encoding: .utf8)
                + "\n[defaults]\ncache = true\n")
    }

    /// A host's flake whose system refers to a path every host built with the same `nonce` shares, and, with
    /// `withExtra`, to one of this host's own: two such systems differ by one derivation.
    static func flake(host: String, nonce: String, withExtra: Bool) -> String {
        """
        {
          outputs = { self }: {
            nixosConfigurations.\(host).config.system.build.toplevel =
              let
                shared = derivation {
                  name = "fleet-pool-shared";
                  nonce = "\(nonce)";
                  system = "x86_64-linux";
                  builder = "/bin/sh";
                  args = [ "-c" "/bin/mkdir -p $out && echo shared-\(nonce) > $out/data" ];
                };
                extra = derivation {
                  name = "fleet-pool-only-\(host)";
                  nonce = "\(nonce)";
                  system = "x86_64-linux";
                  builder = "/bin/sh";
                  args = [ "-c" "/bin/mkdir -p $out && echo only-\(host) > $out/data" ];
                };
              in
              derivation {
                name = "nixos-system-\(host)-pool";
                system = "x86_64-linux";
                builder = "/bin/sh";
                args = [ "-c" ''
                  /bin/mkdir -p $out/bin
                  /bin/ln -s ${shared} $out/shared
                  \(withExtra ? "/bin/ln -s ${extra} $out/extra" : "")
                  printf '#!/bin/sh\\necho "$1 \(host) '$out'" >> "$FLEET_ACTIVATION_LOG"\\n' > $out/bin/switch-to-configuration
                  /bin/chmod +x $out/bin/switch-to-configuration
                '' ];
              };
          };
        }

        """
    }

    static func hash(_ storePath: String) throws -> String {
        guard let hash = Nix.hashPart(ofStorePath: storePath) else {
            throw TestSupportError("\(storePath) is not a store path")
        }
        return hash
    }

    /// `du -sb` of `path`: each inode once, or with `countingLinks` each name.
    static func du(_ path: String, countingLinks: Bool) throws -> Int64 {
        let output = try TestCommand.run("/usr/bin/du", ["-s", "-b"] + (countingLinks ? ["-l"] : []) + [path])
        guard output.succeeded, let size = Int64(output.standardOutput.split(separator: "\t").first ?? "") else {
            throw TestSupportError("du \(path): \(output.standardError)")
        }
        return size
    }

    /// Calls `body` with the status of every regular file under `path`.
    static func walkFiles(_ path: String, _ body: (FileStatus) -> Void) throws {
        guard let status = try FileStatus.of(path) else { return }
        switch status.kind {
        case .directory: for name in try FileIO.listDirectory(path) { try walkFiles(path + "/" + name, body) }
        case .regular: body(status)
        default: break
        }
    }

    /// `sftp` (OpenSSH's) as `host`'s user with its key: `get remote local`.
    static func sftpGet(_ fleet: ClientFleet, as host: String, _ remote: String, _ local: String) async throws
        -> CommandOutput
    {
        let knownHosts = fleet.clients.path("known_hosts")
        try fleet.clients.writeFile("known_hosts", text: "[127.0.0.1]:\(fleet.sshd.port) \(fleet.sshd.hostPublicKey)\n")
        return try await Command.run(
            "sftp",
            [
                "-b", "-", "-i", fleet.clients.path("\(host).key"), "-P", "\(fleet.sshd.port)", "-o", "BatchMode=yes",
                "-o", "UserKnownHostsFile=\(knownHosts)", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
                "\(fleet.prefix)\(host)@127.0.0.1",
            ], input: "get \(remote) \(local)\n")
    }
}

extension CachePoolTests {
    /// Copies a store path into the pool behind the publisher's back, signed with the fleet's key, as `nix copy`
    /// does for a publish.
    static func copy(_ storePath: String, into pool: CachePool, signedFor fixture: FleetFixture) throws {
        let key = fixture.stateDirectory + "/" + SigningKeyFile.secretName
        let copy = try TestCommand.run(
            "/usr/bin/nix",
            Nix.flakeFlags + ["copy", "--to", "file://\(pool.directory)?secret-key=\(key)&compression=zstd", storePath])
        #expect(copy.succeeded, "nix copy \(storePath): \(copy.standardError)")
    }
}
