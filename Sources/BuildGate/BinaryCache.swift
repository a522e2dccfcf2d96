import CommandRunner
import FleetFiles
import Foundation
import NixKit

/// A host's binary cache in its chroot (`cache/`): the closure of its built system, signed with the fleet key,
/// as `nix copy --to file://` writes it; and the collection of what no published generation needs any more.
public struct BinaryCache: Sendable {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// Copies `toplevel`'s closure (and nothing else) into the cache, signing each path with the key file (the
    /// fleet's `signing.key`, Nix format), then makes everything root-owned and world-readable (the host reads it
    /// over SFTP; it is public data, signed).
    public func add(closureOf toplevel: String, signingKeyFile: String) async throws(Failure) {
        let destination = "file://\(directory)?secret-key=\(signingKeyFile)&compression=zstd"
        do {
            try await Command.checked("nix", Nix.flakeFlags + ["copy", "--to", destination, toplevel])
        } catch {
            throw Failure(description: "cannot copy \(toplevel) into the binary cache \(directory): \(error)")
        }
        normalizePermissions(directory)
    }

    /// Deletes narinfo and nar files that the closures of `toplevels` (the systems of the generations still
    /// published) do not need. The closure is read from the cache's own narinfo files.
    ///
    /// - Returns: the names deleted.
    @discardableResult
    public func collect(keeping toplevels: [String]) -> [String] {
        var neededInfo: Set<String> = []
        var neededNars: Set<String> = []
        var queue = toplevels.compactMap(Nix.hashPart(ofStorePath:))
        while let hash = queue.popLast() {
            let name = hash + ".narinfo"
            guard !neededInfo.contains(name) else { continue }
            neededInfo.insert(name)
            guard let bytes = try? FileIO.readNoFollow(directory + "/" + name, limit: 64 << 10),
                let info = try? NarInfo(parsing: bytes, name: name)
            else { continue }
            neededNars.insert(info.narFile)
            queue += info.references
        }
        var deleted: [String] = []
        for name in (try? FileIO.listDirectory(directory)) ?? []
        where name.hasSuffix(".narinfo") && !neededInfo.contains(name) {
            if (try? FileIO.removeFile(directory + "/" + name)) == true { deleted.append(name) }
        }
        for name in (try? FileIO.listDirectory(directory + "/nar")) ?? [] where !neededNars.contains(name) {
            if (try? FileIO.removeFile(directory + "/nar/" + name)) == true { deleted.append("nar/" + name) }
        }
        return deleted
    }

    /// The store paths whose narinfo the cache holds.
    public func storePathHashes() -> Set<String> {
        Set(
            ((try? FileIO.listDirectory(directory)) ?? []).filter { $0.hasSuffix(".narinfo") }.map {
                String($0.dropLast(8))
            })
    }

    private func normalizePermissions(_ path: String) {
        guard let status = try? FileStatus.of(path) else { return }
        switch status.kind {
        case .directory:
            try? FileIO.setOwner(path, owner: 0, group: 0)
            try? FileIO.setMode(path, 0o755)
            for name in (try? FileIO.listDirectory(path)) ?? [] { normalizePermissions(path + "/" + name) }
        case .regular:
            try? FileIO.setOwner(path, owner: 0, group: 0)
            try? FileIO.setMode(path, 0o644)
        default:
            _ = try? FileIO.removeFile(path)
        }
    }
}
