import FleetFiles
import Synchronization

/// Where the multiply-linked files of the repository's host trees and secrets are, by inode.
///
/// A hard link is the same file under two names, so `hosts/a/x` linked to `secrets/b/token` would publish b's
/// secret to a; the link policy that refuses such symbolic links must see these too. A git checkout makes no
/// hard links, so the index is built only the first time a walk meets a file with more than one link, once per
/// publish, and an ordinary publish never pays for it.
final class HardlinkIndex: Sendable {
    /// Whose a name is: a host's tree or a host's secrets.
    enum Owner: Equatable, Sendable {
        case tree(host: String)
        case secrets(host: String)
    }

    struct Place: Equatable, Sendable {
        /// Relative to the repository, e.g. `secrets/b/token`.
        let path: String
        let owner: Owner
    }

    struct Key: Hashable, Sendable {
        let device: UInt64
        let inode: UInt64
    }

    /// Enough for any fleet; a repository beyond it is indexed in part (what is past the bound is not found).
    static let entryLimit = 2_000_000

    private let repository: String
    private let index = Mutex<[Key: [Place]]?>(nil)

    init(repository: String) {
        self.repository = repository
    }

    /// Every indexed name of the file `status` describes.
    func places(of status: FileStatus) -> [Place] {
        let key = Key(device: status.device, inode: status.inode)
        return index.withLock { index in
            if index == nil { index = build() }
            return index?[key] ?? []
        }
    }

    private func build() -> [Key: [Place]] {
        var found: [Key: [Place]] = [:]
        var visited = 0
        for top in ["hosts", "secrets"] {
            for host in (try? FileIO.listDirectory(repository + "/" + top)) ?? [] {
                let owner: Owner = top == "hosts" ? .tree(host: host) : .secrets(host: host)
                walk(top + "/" + host, owner: owner, into: &found, visited: &visited)
            }
        }
        return found
    }

    /// Records the multiply-linked regular files below `relative`, without following links.
    private func walk(_ relative: String, owner: Owner, into found: inout [Key: [Place]], visited: inout Int) {
        guard visited < Self.entryLimit, let status = try? FileStatus.of(repository + "/" + relative) else { return }
        visited += 1
        switch status.kind {
        case .regular where status.linkCount > 1:
            found[Key(device: status.device, inode: status.inode), default: []].append(
                Place(path: relative, owner: owner))
        case .directory:
            for name in (try? FileIO.listDirectory(repository + "/" + relative)) ?? [] {
                walk(relative + "/" + name, owner: owner, into: &found, visited: &visited)
            }
        default:
            break
        }
    }
}
