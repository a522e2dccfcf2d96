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
                guard rename(source, target) == 0 else {
                    throw FileSystemError("rename", path: "\(source) -> \(target)")
                }
            } else {
                guard mkdir(target, 0o700) == 0 else { throw FileSystemError("mkdir", path: target) }
            }
            try lockDown(target)
        } catch {
            throw ClientError(
                "cannot install the secrets of generation \(generation) into \(target): \(error)",
                systemError: (error as? FileSystemError)?.errno)
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
            unlink(link)
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
        let temporary = FileIO.temporaryPath(for: link)
        unlink(temporary)
        guard symlink(target, temporary) == 0 else { throw FileSystemError("symlink", path: temporary) }
        guard rename(temporary, link) == 0 else {
            unlink(temporary)
            throw FileSystemError("rename", path: "\(temporary) -> \(link)")
        }
    }

    /// Owner: the client's user (root); directories 0700, files 0400. Anything else was refused at extraction.
    private func lockDown(_ path: String) throws(FileSystemError) {
        guard let status = try FileStatus.of(path) else { return }
        switch status.kind {
        case .directory:
            guard lchown(path, getuid(), getgid()) == 0, chmod(path, 0o700) == 0 else {
                throw FileSystemError("chmod", path: path)
            }
            for name in try FileIO.listDirectory(path) { try lockDown(path + "/" + name) }
        case .regular:
            guard lchown(path, getuid(), getgid()) == 0, chmod(path, 0o400) == 0 else {
                throw FileSystemError("chmod", path: path)
            }
        default:
            unlink(path)
            throw FileSystemError("install", path: path, detail: "not a regular file or directory; removed")
        }
    }
}
