import CommandRunner
import FleetFiles
import FleetProtocol
import Foundation
import NixKit
import SFTPTransport

/// Copies from the chroot's `cache/` (a Nix binary cache made by `fleet publish` with the cache on) the files
/// that a toplevel's closure needs and the local cache `<state_dir>/cache` lacks.
///
/// Only the closure is walked (narinfo `References`), so nothing else in the remote cache is fetched. Names
/// and sizes are checked before anything is written; signatures are Nix's business when it substitutes, with
/// the fleet key as the only trusted key.
struct CacheMirror {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static let narinfoLimit = 64 << 10
    static let narLimit: Int64 = 8 << 30
    static let maxPaths = 100_000

    let localDirectory: String
    let log: RunLog

    /// - Returns: how many files were downloaded.
    func mirror(closureOf toplevel: String, over connection: SFTPConnection) async throws(Failure) -> Int {
        guard let root = Nix.hashPart(ofStorePath: toplevel) else {
            throw Failure(description: "the manifest's toplevel \(String(reflecting: toplevel)) is not a store path")
        }
        do {
            try FileIO.ensureDirectory(localDirectory, mode: 0o755, owner: getuid(), group: getgid())
            try FileIO.ensureDirectory(localDirectory + "/nar", mode: 0o755, owner: getuid(), group: getgid())
            let info = localDirectory + "/nix-cache-info"
            if try FileStatus.of(info) == nil {
                try FileIO.writeAtomically(
                    Array("StoreDir: /nix/store\nWantMassQuery: 0\nPriority: 30\n".utf8), to: info)
            }
        } catch {
            throw Failure(description: "cannot prepare the local cache \(localDirectory): \(error)")
        }
        var downloaded = 0
        var seen: Set<String> = [root]
        var queue = [root]
        var nars: [String] = []
        while let hash = queue.popLast() {
            guard seen.count <= Self.maxPaths else {
                throw Failure(description: "the closure has more than \(Self.maxPaths) paths")
            }
            let name = hash + ".narinfo"
            let local = localDirectory + "/" + name
            let bytes: [UInt8]
            if let existing = try? FileIO.readNoFollow(local, limit: Self.narinfoLimit) {
                bytes = existing
            } else {
                do {
                    bytes = try await connection.readFile(ChrootPaths.cacheFile(name), limit: Self.narinfoLimit)
                } catch {
                    throw Failure(
                        description:
                            "the server's cache lacks \(name), which the closure of \(toplevel) needs: \(error)")
                }
                try write(bytes, to: local)
                downloaded += 1
            }
            let info: NarInfo
            do { info = try NarInfo(parsing: bytes, name: name) } catch {
                throw Failure(description: error.description)
            }
            nars.append(info.url)
            for reference in info.references where !seen.contains(reference) {
                seen.insert(reference)
                queue.append(reference)
            }
        }
        for url in nars {
            let local = localDirectory + "/" + url
            if (try? FileStatus.of(local)) ?? nil != nil { continue }
            let temporary = FileIO.temporaryPath(for: local)
            _ = try? FileIO.removeFile(temporary)
            do {
                try await connection.download(ChrootPaths.cacheFile(url), to: temporary, limit: Self.narLimit)
            } catch {
                throw Failure(description: "cannot download cache file \(url): \(error)")
            }
            do {
                try FileIO.rename(temporary, to: local)
            } catch {
                _ = try? FileIO.removeFile(temporary)
                throw Failure(description: "cannot move \(temporary) to \(local) (errno \(error.errno))")
            }
            downloaded += 1
        }
        log.phase(
            "local binary cache holds the closure of \(toplevel) (\(seen.count) paths, \(downloaded) files downloaded)")
        return downloaded
    }

    private func write(_ bytes: [UInt8], to path: String) throws(Failure) {
        do { try FileIO.writeAtomically(bytes, to: path, mode: 0o644) } catch {
            throw Failure(description: "cannot write \(path): \(error)")
        }
    }
}
