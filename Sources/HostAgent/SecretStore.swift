import ClientStateStore
import FleetFiles
import Foundation

/// The host's secrets, kept outside every tree that Nix evaluates, so they can never be copied into the
/// world-readable Nix store.
///
/// Each generation's secrets live in `<state_dir>/secrets.d/<gen>/` (root, directories 0700, files 0400), and
/// `<state_dir>/secrets` points at the active generation's. The link moves just before activation and moves
/// back when the activation fails, so the running system always sees the secrets it was built for.
struct SecretStore {
    let stateDirectory: String

    var generationsDirectory: String { stateDirectory + "/secrets.d" }
    var link: String { stateDirectory + "/secrets" }

    /// Moves `secrets/` out of an extracted generation (leaving only `tree/` there) and locks it down.
    func take(from generationDirectory: String, generation: UInt64) throws(ClientError) {
        let target = "\(generationsDirectory)/\(generation)"
        do {
            try FileIO.ensureDirectory(generationsDirectory, mode: 0o700, owner: getuid(), group: getgid())
            try FileIO.removeTree(target)
            let source = generationDirectory + "/secrets"
            if try FileStatus.of(source) != nil {
                try FileIO.rename(source, to: target)
            } else {
                try FileIO.createNewDirectory(target, mode: 0o700)
            }
            try lockDown(target)
        } catch {
            throw ClientError(
                "cannot install the secrets of generation \(generation) into \(target): \(error)",
                systemError: error.errno)
        }
    }

    /// Points `secrets` at this generation's secrets.
    func activate(generation: UInt64) throws(ClientError) {
        do {
            try pointLink(at: "secrets.d/\(generation)")
        } catch {
            throw ClientError(
                "cannot point \(link) at the secrets of generation \(generation): \(error)", systemError: error.errno)
        }
    }

    /// Points `secrets` back at a previous generation's secrets, or removes it when there was none.
    func restore(generation: UInt64?) {
        if let generation {
            try? pointLink(at: "secrets.d/\(generation)")
        } else {
            _ = try? FileIO.removeFile(link)
        }
    }

    /// Removes the secrets of generations no longer kept.
    func prune(keeping kept: Set<UInt64>) {
        for name in (try? FileIO.listDirectory(generationsDirectory)) ?? [] {
            guard let number = UInt64(name), !kept.contains(number) else { continue }
            try? FileIO.removeTree("\(generationsDirectory)/\(name)")
        }
    }

    private func pointLink(at target: String) throws(FileSystemError) {
        try FileIO.replaceSymlink(link, pointingTo: target)
    }

    /// Owner: the client's user (root); directories 0700, files 0400. Anything else was refused at extraction.
    private func lockDown(_ path: String) throws(FileSystemError) {
        guard let status = try FileStatus.of(path) else { return }
        switch status.kind {
        case .directory:
            try FileIO.setOwnerAndMode(path, owner: getuid(), group: getgid(), mode: 0o700)
            for name in try FileIO.listDirectory(path) { try lockDown(path + "/" + name) }
        case .regular:
            try FileIO.setOwnerAndMode(path, owner: getuid(), group: getgid(), mode: 0o400)
        default:
            _ = try? FileIO.removeFile(path)
            throw FileSystemError("install", path: path, detail: "not a regular file or directory; removed")
        }
    }
}
