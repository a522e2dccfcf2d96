import FleetFiles
import Foundation
import NixKit

/// A host's binary cache in its chroot (`cache/`): hard links to the ``CachePool``'s files of exactly the
/// closures of its served systems, plus its own `nix-cache-info`; and the collection of the links that no
/// published generation needs any more.
public struct BinaryCache: Sendable {
    /// Why a host's cache could not be made; the host is then not published (its generation stays).
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// Deletes narinfo and nar files (links into the pool, or files an older fleet copied here) that the
    /// closures of `toplevels` (the systems of the generations still served) do not need. The closure is read
    /// from the cache's own narinfo files. The pool's copy goes at the pool's collection, once no host links it.
    ///
    /// - Returns: the names deleted and their sizes.
    @discardableResult
    public func collect(keeping toplevels: [String]) -> CacheRemoval {
        var neededInfo: Set<String> = []
        var neededNars: Set<String> = []
        var queue = toplevels.compactMap(Nix.hashPart(ofStorePath:))
        while let hash = queue.popLast() {
            let name = NarInfo.fileName(ofHashPart: hash)
            guard !neededInfo.contains(name) else { continue }
            neededInfo.insert(name)
            guard let bytes = try? FileIO.readNoFollow(directory + "/" + name, limit: 64 << 10),
                let info = try? NarInfo(parsing: bytes, name: name)
            else { continue }
            neededNars.insert(info.narFile)
            queue += info.references
        }
        var removal = CacheRemoval()
        for name in (try? FileIO.listDirectory(directory)) ?? []
        where name.hasSuffix(".narinfo") && !neededInfo.contains(name) {
            remove(name, into: &removal)
        }
        for name in (try? FileIO.listDirectory(directory + "/nar")) ?? [] where !neededNars.contains(name) {
            remove("nar/" + name, into: &removal)
        }
        return removal
    }

    /// The store paths whose narinfo the cache holds.
    public func storePathHashes() -> Set<String> {
        Set(
            ((try? FileIO.listDirectory(directory)) ?? []).filter { $0.hasSuffix(".narinfo") }.map {
                String($0.dropLast(8))
            })
    }

    private func remove(_ name: String, into removal: inout CacheRemoval) {
        let path = directory + "/" + name
        let size = (try? FileStatus.of(path))?.size ?? 0
        if (try? FileIO.removeFile(path)) == true { removal.add(name, bytes: size) }
    }
}
