import CommandRunner
import FleetFiles
import FleetProtocol
import Foundation
import NixKit
import SFTPTransport

/// Fetches from the chroot's `cache/` (one ``CacheEntry`` per store path, made by `fleet publish` with the cache
/// on) exactly the store paths of a toplevel's closure that this host's Nix store lacks, into `<state_dir>/cache`
/// as a Nix binary cache (each entry split into its narinfo and NAR files), from where
/// ``NixSystem/realise(_:cache:trustedKey:gcRoot:)`` substitutes them and then empties it.
///
/// The closure is walked level by level from the toplevel: the local store is asked which paths of a level it
/// lacks (one `nix-store --check-validity` per level), and only below those is the walk continued, because a
/// valid path's whole closure is valid. A host whose store holds the toplevel fetches nothing. Each level's
/// narinfos (the heads of their entries) are read into memory many at once over the one SFTP session, then the
/// NARs (the rest of the entries) downloaded in batches.
/// A batch's narinfo files are written into the local cache only when the batch goes to Nix: a file made costs
/// more than the bytes in it, and the walk is on the critical path. Names and sizes are checked before anything
/// is written; signatures are Nix's business when it substitutes, with the fleet key as the only trusted key.
///
/// What a failed or interrupted run fetched stays for the next try, but only while the closure needs it: at
/// each fetch, files the current closure's missing paths do not need are removed first, and narinfo files are
/// always read again (they are small, and one cut by a crash is never trusted).
struct CacheFetch {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        /// The machine failed (a full disk, a Nix store that cannot be asked), not the server or generation.
        var isLocal = false
    }

    static let narinfoLimit = Int64(CacheEntry.narinfoLimit)
    /// What the walk holds in memory of the narinfo files of the missing paths, in all (a real closure's are a few
    /// MB): a server that sends more is refused rather than let the host run out of memory.
    static let narinfosInMemoryLimit: Int64 = 256 << 20
    /// The limit the walk applies: ``narinfosInMemoryLimit``, or in debug builds (the tests') the bytes that
    /// `FLEET_TEST_NARINFO_MEMORY_LIMIT` gives, so that a test reaches the refusal without a server holding
    /// hundreds of MiB of narinfos.
    static var walkMemoryLimit: Int64 {
        #if FLEET_TEST_LIMITS
            if let text = ProcessInfo.processInfo.environment["FLEET_TEST_NARINFO_MEMORY_LIMIT"],
                let bytes = Int64(text), bytes > 0
            {
                return bytes
            }
        #endif
        return narinfosInMemoryLimit
    }
    /// What a parsed reference costs beside its narinfo's bytes (its hash part and its path, two heap strings, and
    /// their slots), counted toward ``narinfosInMemoryLimit``: a 64 KiB narinfo can name nearly 1,900 references.
    static let memoryPerReference: Int64 = 320
    /// narinfo files read at once: at most ``narinfoLimit`` times this (64 MiB) held beyond what was counted.
    static let narinfosPerRead = 1_024
    static let narLimit: Int64 = 8 << 30
    /// The largest entry: its narinfo, the empty line, its NAR.
    static let entryLimit = narLimit + narinfoLimit + 1
    static let maxPaths = 100_000
    /// NARs downloaded (and made durable) together: a batch is all or nothing, so an interruption loses at most
    /// one batch, and at most this much waits on disk under temporary names.
    static let narBatchBytes: Int64 = 512 << 20
    static let narBatchFiles = 512
    /// With ``substitution``, batches start small so that the substitution starts early, and stay small enough to
    /// keep it busy: 16, 32, then 64 MiB.
    static func substitutionBatchBytes(batch index: Int) -> Int64 { Int64(16 << 20) << Int64(min(index, 2)) }

    let localDirectory: String
    let log: RunLog
    /// What time it is (durations): the system's, or a test's.
    var clock: WallClock = .system
    /// Substitutes each batch of NARs as it arrives, while the next downloads; nil: the download only fetches.
    var substitution: SubstitutionWhileDownloading? = nil

    private var narDirectory: String { localDirectory + "/nar" }

    /// Fetches what the local store lacks of `toplevel`'s closure.
    ///
    /// - Returns: what it cost, for the report.
    func fetch(closureOf toplevel: String, over connection: SFTPConnection) async throws(Failure)
        -> RunReport.CacheTransfer
    {
        let started = clock.now()
        guard Nix.hashPart(ofStorePath: toplevel) != nil, !toplevel.hasSuffix(".drv") else {
            throw Failure(description: "the manifest's toplevel \(String(reflecting: toplevel)) is not a store path")
        }
        try prepare()

        // The walk: narinfos of the missing paths, level by level.
        var seen: Set<String> = [toplevel]
        var frontier = [toplevel]
        var missing: [String: MissingPath] = [:]
        var validRoots: [String] = []
        var files = 0
        var bytes: Int64 = 0
        var inMemory: Int64 = 0
        while !frontier.isEmpty {
            let invalid = try await Self.invalidPaths(frontier)
            validRoots += frontier.filter { !invalid.contains($0) }
            let wanted = frontier.filter { invalid.contains($0) }
            let fetched = try await narinfos(
                of: wanted, over: connection, closureOf: toplevel, inMemory: &inMemory, files: &files, bytes: &bytes)
            frontier = []
            for found in fetched {
                missing[found.path] = found
                for reference in found.info.referencedPaths where seen.insert(reference).inserted {
                    frontier.append(reference)
                }
                guard seen.count <= Self.maxPaths else {
                    throw Failure(description: "the closure of \(toplevel) has more than \(Self.maxPaths) paths")
                }
            }
        }

        // The store's own paths that the closure needs are held while the NARs download (with nothing to download,
        // the toplevel's own root follows at once).
        let held = missing.isEmpty ? [] : validRoots
        async let notHeld = hold(held)
        // Only the missing paths' NARs may stay; then those, many at once, dependencies first.
        prune(keepingNars: Set(missing.values.map(\.info.narFile)))
        let order = DependencyOrder.dependenciesFirst(missing.mapValues(\.info.referencedPaths)).map { missing[$0]! }
        let nars = try await downloadNars(of: order, over: connection)
        if let failure = await notHeld {
            log.phase(
                "could not hold the \(held.count) path(s) of the closure that the store already had against "
                    + "garbage collection (\(failure)); a collection before the system is realised would make this "
                    + "run fail")
        }
        files += nars.files
        bytes += nars.bytes

        let closure = await closureSize(validRoots: validRoots, missing: missing.count)
        let transfer = RunReport.CacheTransfer(
            closurePaths: closure, missingPaths: missing.count, filesFetched: files, bytesFetched: bytes,
            seconds: nars.downloaded.timeIntervalSince(started))
        log.phase("binary cache: \(transfer.summary)")
        if let substituted = nars.substituted, substituted.paths > 0 {
            log.phase(
                "substituted \(substituted.paths) of those paths into the Nix store in \(substituted.batches) batch(es) "
                    + "while the download ran")
        }
        if !missing.isEmpty {
            let names = missing.keys.map { String($0.dropFirst("/nix/store/".count + 33)) }.sorted()
            let shown = names.prefix(40).joined(separator: " ")
            log.phase("paths this host lacked: \(shown)\(names.count > 40 ? " and \(names.count - 40) more" : "")")
        }
        return transfer
    }

    /// With ``substitution``, roots `paths` (the walk's valid paths) as its batches are rooted, until the system
    /// is realised; nil when done or there is nothing to do, else why not.
    private func hold(_ paths: [String]) async -> String? {
        guard let substitution, !paths.isEmpty else { return nil }
        return await substitution.hold(paths)
    }

    /// What the local cache keeps between runs: its `nix-cache-info`, and the directories (`nar/`, and the empty
    /// `log/` and `realisations/` Nix makes when it opens the cache).
    static func isSkeleton(_ name: String) -> Bool {
        ["nix-cache-info", "nar", "log", "realisations"].contains(name)
    }

    /// Removes every downloaded file of the local cache (its skeleton stays): once the closure is in the Nix
    /// store, a second copy of it is only weight.
    static func empty(_ directory: String) {
        for name in (try? FileIO.listDirectory(directory)) ?? [] where !isSkeleton(name) {
            _ = try? FileIO.removeFile(directory + "/" + name)
        }
        for name in (try? FileIO.listDirectory(directory + "/nar")) ?? [] {
            _ = try? FileIO.removeFile(directory + "/nar/" + name)
        }
    }

    // MARK: The steps

    private func prepare() throws(Failure) {
        do {
            try FileIO.ensureDirectory(localDirectory, mode: 0o755, owner: getuid(), group: getgid())
            try FileIO.ensureDirectory(narDirectory, mode: 0o755, owner: getuid(), group: getgid())
            let info = localDirectory + "/nix-cache-info"
            if try FileStatus.of(info) == nil {
                try FileIO.writeAtomically(
                    Array("StoreDir: /nix/store\nWantMassQuery: 0\nPriority: 30\n".utf8), to: info)
            }
        } catch {
            throw Failure(description: "cannot prepare the local cache \(localDirectory): \(error)", isLocal: true)
        }
    }

    /// The paths of `paths` the local Nix store does not hold, asked in as few calls as the command line allows.
    static func invalidPaths(_ paths: [String]) async throws(Failure) -> Set<String> {
        var invalid: Set<String> = []
        for arguments in StoreValidity.invocations(for: paths) {
            let output: CommandOutput
            do {
                output = try await Command.run(StoreValidity.executable, arguments)
            } catch {
                throw Failure(description: "cannot ask the Nix store which paths it holds: \(error)", isLocal: true)
            }
            guard output.succeeded else {
                throw Failure(
                    description: "nix-store --check-validity exited with status \(output.exitCode)"
                        + Nix.cause(ofFailure: output.standardError), isLocal: true)
            }
            invalid.formUnion(StoreValidity.invalidPaths(in: output.standardOutput, asked: Set(arguments)))
        }
        return invalid
    }

    /// A path the local store lacks: its narinfo as the server's entry starts with it, what it says, and where in
    /// the entry its NAR is.
    struct MissingPath {
        let path: String
        let info: NarInfo
        let narinfo: [UInt8]
        /// The entry's size, and the offset of its NAR's first byte.
        let entrySize: Int64
        let narOffset: Int64
        /// The narinfo file's name in the local cache (Nix's layout).
        var narinfoName: String { NarInfo.fileName(ofHashPart: Nix.hashPart(ofStorePath: path)!) }
        /// The entry on the server.
        var remoteEntry: String { ChrootPaths.cacheFile(Self.entryName(of: path)) }
        static func entryName(of path: String) -> String {
            CacheEntry.fileName(ofHashPart: Nix.hashPart(ofStorePath: path)!)
        }
    }

    /// The narinfos of `paths`, read into memory from the heads of their entries, many at once, and checked;
    /// `inMemory` counts the bytes the walk holds, which may pass ``narinfosInMemoryLimit`` by at most one chunk
    /// before the walk is refused. `files` and `bytes` count what was read.
    private func narinfos(
        of paths: [String], over connection: SFTPConnection, closureOf toplevel: String, inMemory: inout Int64,
        files: inout Int, bytes: inout Int64
    ) async throws(Failure) -> [MissingPath] {
        var found: [MissingPath] = []
        let memoryLimit = Self.walkMemoryLimit
        for start in stride(from: 0, to: paths.count, by: Self.narinfosPerRead) {
            let chunk = Array(paths[start..<min(start + Self.narinfosPerRead, paths.count)])
            var heads = try await readHeads(of: chunk, length: CacheEntry.firstHeadLength, over: connection)
            files += heads.count
            bytes += heads.values.reduce(0) { $0 + Int64($1.bytes.count) }
            // A narinfo longer than the first read: its entry's head again, as long as a narinfo may be.
            let longer = chunk.filter { path in
                let head = heads[path]!
                return CacheEntry.split(head: head.bytes) == nil
                    && CacheEntry.mayHoldLongerNarinfo(headLength: head.bytes.count, size: head.size)
            }
            if !longer.isEmpty {
                let again = try await readHeads(of: longer, length: CacheEntry.longestHeadLength, over: connection)
                files += again.count
                bytes += again.values.reduce(0) { $0 + Int64($1.bytes.count) }
                heads.merge(again) { $1 }
            }
            for path in chunk {
                let head = heads[path]!
                let name = MissingPath.entryName(of: path)
                guard let (narinfo, narOffset) = CacheEntry.split(head: head.bytes) else {
                    throw Failure(
                        description: "the server's cache/\(name) (the entry of \(path)) does not start with a narinfo "
                            + "of at most \(ByteCount.exact(Self.narinfoLimit)) and an empty line")
                }
                let info = try parse(narinfo, name: name, path: path)
                // head.size >= narOffset: the head holds the narinfo and its empty line.
                guard let fileSize = info.fileSize, fileSize == head.size - Int64(narOffset) else {
                    throw Failure(
                        description: "the server's cache/\(name) is \(head.size) bytes, not its narinfo's \(narOffset) "
                            + "and the FileSize it gives (\(info.fileSize.map(String.init) ?? "none"))")
                }
                inMemory += Int64(narinfo.count) + Int64(info.references.count) * Self.memoryPerReference
                guard inMemory <= memoryLimit else {
                    throw Failure(
                        description: "the narinfo files of the closure of \(toplevel) on the server's cache take more "
                            + "than \(ByteCount.exact(memoryLimit)) in memory (at cache/\(name)): refused")
                }
                found.append(
                    MissingPath(
                        path: path, info: info, narinfo: narinfo, entrySize: head.size, narOffset: Int64(narOffset)))
            }
        }
        return found
    }

    /// The first `length` bytes of the entries of `paths`, with their sizes.
    private func readHeads(of paths: [String], length: Int, over connection: SFTPConnection)
        async throws(Failure) -> [String: SFTPConnection.FileHead]
    {
        let remote = paths.map { ChrootPaths.cacheFile(MissingPath.entryName(of: $0)) }
        let heads: [String: SFTPConnection.FileHead]
        do {
            heads = try await connection.readFileHeads(remote, length: length, limit: Self.entryLimit)
        } catch {
            throw Failure(
                description: "cannot read the narinfos of \(paths.count) paths of the closure from the server's cache: "
                    + "\(error)", isLocal: error.code == .localIO)
        }
        var byPath: [String: SFTPConnection.FileHead] = [:]
        for (path, name) in zip(paths, remote) {
            guard let head = heads[name] else {
                throw Failure(description: "the server's cache did not send \(name)")
            }
            byPath[path] = head
        }
        return byPath
    }

    private func parse(_ bytes: [UInt8], name: String, path: String) throws(Failure) -> NarInfo {
        let info: NarInfo
        do { info = try NarInfo(parsing: bytes, name: "cache/" + name) } catch {
            throw Failure(description: "the server's \(error.description)")
        }
        guard let described = info.storePath else {
            throw Failure(
                description: "the server's cache/\(name) has no well-formed StorePath line: it should name \(path)")
        }
        guard described == path else {
            throw Failure(description: "the server's cache/\(name) describes \(described), not \(path)")
        }
        return info
    }

    /// The NARs of `paths` (in dependencies-first order) that the local cache does not hold yet, in batches; with
    /// ``substitution``, each batch's paths are substituted while the next batch downloads, and this returns once
    /// the last is substituted too (or failed: the substitution of the toplevel says why).
    ///
    /// - Returns: files and bytes downloaded, when the last byte came, and what the substitution did.
    private func downloadNars(of paths: [MissingPath], over connection: SFTPConnection)
        async throws(Failure)
        -> (files: Int, bytes: Int64, downloaded: Date, substituted: SubstitutionWhileDownloading.Summary?)
    {
        guard let substitution else {
            let counts = try await downloadNars(of: paths, over: connection, whenLocal: { _ in })
            return (counts.files, counts.bytes, clock.now(), nil)
        }
        let (batches, queue) = AsyncStream.makeStream(of: SubstitutionWhileDownloading.Batch.self)
        async let substituted = substitution.substitute(batches)
        let counts: (files: Int, bytes: Int64)
        do {
            counts = try await downloadNars(of: paths, over: connection, whenLocal: { queue.yield($0) })
        } catch {
            queue.finish()
            _ = await substituted
            throw error
        }
        queue.finish()
        let downloaded = clock.now()
        return (counts.files, counts.bytes, downloaded, await substituted)
    }

    /// Downloads the NARs of `paths` in order and in batches, writes the batch's narinfo files, and hands the
    /// batch to `whenLocal` once its files are in place (with the paths whose NARs an interrupted run left, as
    /// their turn comes).
    private func downloadNars(
        of paths: [MissingPath], over connection: SFTPConnection,
        whenLocal: (SubstitutionWhileDownloading.Batch) -> Void
    ) async throws(Failure) -> (files: Int, bytes: Int64) {
        // The NAR files to download (each once: identical contents share one); the others are in place already.
        var toDownload: Set<String> = []
        var announced: Int64 = 0
        // Where each NAR file is needed first and last in `paths`: only a batch that holds all its paths may
        // remove it once they are in the store.
        var users: [String: ClosedRange<Int>] = [:]
        for (index, missing) in paths.enumerated() {
            let info = missing.info
            users[info.narFile] = (users[info.narFile]?.lowerBound ?? index)...index
            guard !toDownload.contains(info.narFile), !narIsInPlace(info) else { continue }
            toDownload.insert(info.narFile)
            announced += info.fileSize ?? 0
        }
        let pending = toDownload.count
        if pending > 0 {
            log.phase(
                "downloading \(pending) NAR file(s) (\(String(format: "%.1f", Double(announced) / 1_000_000)) MB) "
                    + "from the fleet's binary cache")
        }
        var files = 0
        var bytes: Int64 = 0
        var batch: [MissingPath] = []
        var batchBytes: Int64 = 0
        var batchStart = 0
        var batchesDone = 0
        for (index, missing) in paths.enumerated() {
            let info = missing.info
            if toDownload.remove(info.narFile) != nil {
                batch.append(missing)
                batchBytes += info.fileSize ?? (64 << 20)
            }
            let limit = substitution == nil ? Self.narBatchBytes : Self.substitutionBatchBytes(batch: batchesDone)
            guard index == paths.count - 1 || batch.count >= Self.narBatchFiles || batchBytes >= limit else {
                continue
            }
            if !batch.isEmpty {
                bytes += try await download(
                    batch.map {
                        SFTPConnection.Download(
                            remotePath: $0.remoteEntry, localPath: narDirectory + "/" + $0.info.narFile,
                            limit: Self.entryLimit, expectedSize: $0.entrySize, offset: $0.narOffset)
                    }, what: "NAR files", over: connection)
                files += batch.count
                batchesDone += 1
                log.progress("downloaded \(files) of \(pending) NAR files")
            }
            let members = paths[batchStart...index]
            try writeNarinfos(of: members)
            let own = members.map(\.info.narFile).filter {
                users[$0]!.lowerBound >= batchStart && users[$0]!.upperBound <= index
            }
            whenLocal(
                SubstitutionWhileDownloading.Batch(
                    paths: members.map { ($0.path, $0.info.referencedPaths) },
                    narFiles: Set(own).sorted().map { narDirectory + "/" + $0 }))
            batch = []
            batchBytes = 0
            batchStart = index + 1
        }
        return (files, bytes)
    }

    /// Whether an earlier run left `info`'s NAR file whole: a regular file of the size and the SHA-256 (`FileHash`)
    /// the narinfo says. One emptied once its paths were in the store, cut by a crash or damaged is downloaded
    /// again, and so is any when the narinfo gives no `sha256:` FileHash.
    private func narIsInPlace(_ info: NarInfo) -> Bool {
        // Of the right size but other bytes (damaged, or sent by a server since corrected), it would fail every
        // later substitution that needs it: only the bytes the narinfo names are used again.
        info.fileSHA256 != nil && Self.mismatch(ofNar: narDirectory + "/" + info.narFile, for: info) == nil
    }

    /// Why the NAR file at `path` is not the one `info` names (missing, another size than `FileSize`, another
    /// SHA-256 than `FileHash`), or nil when it is (or when the narinfo gives no `sha256:` FileHash to compare).
    static func mismatch(ofNar path: String, for info: NarInfo) -> String? {
        guard let status = (try? FileStatus.of(path)) ?? nil, status.kind == .regular else { return "missing" }
        if let size = info.fileSize, size != status.size {
            return "\(status.size) bytes where its narinfo's FileSize says \(size)"
        }
        guard info.fileSize != nil || status.size > 0 else { return "empty" }
        guard let expected = info.fileSHA256 else { return nil }
        guard let digest = try? SHA256Hasher.digest(ofFile: path) else { return "unreadable" }
        let actual = NixBase32.encode(digest)
        return actual == expected
            ? nil : "its SHA-256 is sha256:\(actual) where its narinfo's FileHash says sha256:\(expected)"
    }

    /// The NAR files in the local cache `directory` that are not what their narinfo says, by store path, with
    /// why (empty files, which substituted batches leave, are not looked at). Read after a failed substitution (a NAR in the cache is one not in the store yet): a damaged NAR came
    /// so from the server, which Nix reports as a failure of its own among others.
    static func damagedNars(in directory: String) -> [(storePath: String, file: String, reason: String)] {
        var damaged: [(storePath: String, file: String, reason: String)] = []
        for name in ((try? FileIO.listDirectory(directory)) ?? []).sorted() where name.hasSuffix(".narinfo") {
            guard let bytes = try? FileIO.readNoFollow(directory + "/" + name, limit: Int(narinfoLimit)),
                let info = try? NarInfo(parsing: bytes, name: name)
            else { continue }
            let path = directory + "/nar/" + info.narFile
            // An empty file is a NAR whose batch is in the store already (emptied then), not a damaged one: a
            // download cut short fails the download itself (its size is checked).
            guard let status = (try? FileStatus.of(path)) ?? nil, status.kind == .regular, status.size > 0,
                let reason = mismatch(ofNar: path, for: info)
            else { continue }
            damaged.append((info.storePath ?? name, path, reason))
        }
        return damaged
    }

    /// Writes the narinfo files of `paths` into the local cache, as the server sent them, for Nix to read. They
    /// are not made durable: no run reads them again (each walk reads the server's).
    private func writeNarinfos(of paths: ArraySlice<MissingPath>) throws(Failure) {
        for path in paths {
            let local = localDirectory + "/" + path.narinfoName
            do {
                try FileIO.writeAtomically(path.narinfo, to: local, durable: false)
            } catch {
                throw Failure(description: "cannot write \(local): \(error)", isLocal: true)
            }
        }
    }

    /// Downloads `items` under temporary names (their `localPath` with ``FileIO/temporaryPath(for:)``: all or
    /// nothing, made durable together), then renames them to their `localPath` and makes the renames durable.
    ///
    /// - Returns: the bytes downloaded.
    private func download(_ items: [SFTPConnection.Download], what: String, over connection: SFTPConnection)
        async throws(Failure) -> Int64
    {
        let downloads = items.map {
            SFTPConnection.Download(
                remotePath: $0.remotePath, localPath: FileIO.temporaryPath(for: $0.localPath), limit: $0.limit,
                expectedSize: $0.expectedSize, offset: $0.offset)
        }
        for download in downloads { _ = try? FileIO.removeFile(download.localPath) }
        let bytes: Int64
        do {
            bytes = try await connection.downloadFiles(downloads)
        } catch {
            throw Failure(
                description: "cannot download \(items.count) \(what) of the closure from the server's cache: \(error)",
                isLocal: error.code == .localIO)
        }
        do {
            for (item, download) in zip(items, downloads) { try FileIO.rename(download.localPath, to: item.localPath) }
            if let first = items.first { try FileIO.syncDirectory(of: first.localPath) }
        } catch {
            for download in downloads { _ = try? FileIO.removeFile(download.localPath) }
            throw Failure(description: "cannot move downloaded \(what) into \(localDirectory): \(error)", isLocal: true)
        }
        return bytes
    }

    /// Removes every file of the local cache that the current fetch does not need: what earlier runs left (their
    /// narinfo files too: each fetch writes those it needs again).
    private func prune(keepingNars nars: Set<String>) {
        var removed = 0
        for name in (try? FileIO.listDirectory(localDirectory)) ?? [] where !Self.isSkeleton(name) {
            if (try? FileIO.removeFile(localDirectory + "/" + name)) == true { removed += 1 }
        }
        for name in (try? FileIO.listDirectory(narDirectory)) ?? [] where !nars.contains(name) {
            if (try? FileIO.removeFile(narDirectory + "/" + name)) == true { removed += 1 }
        }
        if removed > 0 { log.phase("removed \(removed) file(s) that earlier runs left") }
    }

    /// How many paths the closure has: the missing ones plus the closures of the valid paths the walk met (the
    /// local store answers that); nil when the store cannot say.
    private func closureSize(validRoots: [String], missing: Int) async -> Int? {
        guard !validRoots.isEmpty else { return missing }
        var requisites: Set<Substring> = []
        let command = ["nix-store", "--query", "--requisites"]
        for paths in PathArguments.split(validRoots, besides: command) {
            guard let output = try? await Command.run(command[0], Array(command.dropFirst()) + paths),
                output.succeeded
            else { return nil }
            requisites.formUnion(output.standardOutput.split(separator: "\n"))
        }
        return missing + requisites.count
    }
}
