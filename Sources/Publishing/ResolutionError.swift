public import FleetProtocol

/// Why a host's tree cannot be published. Each names the path in the fleet repository and, for links,
/// the target, so the sysadmin can fix it without guessing.
public enum ResolutionProblem: Sendable, Equatable, CustomStringConvertible {
    case linkOutsideRepository(link: String, target: String)
    case linkIntoOtherHost(link: String, target: String, otherHost: String)
    case linkIntoSecrets(link: String, target: String)
    case linkIntoGitDirectory(link: String, target: String)
    case brokenLink(link: String, target: String)
    case linkCycle(link: String, target: String)
    case linkInSecrets(path: String, target: String)
    case hardlinkIntoSecrets(path: String, other: String)
    case hardlinkIntoOtherHost(path: String, other: String, otherHost: String)
    case specialFile(path: String)
    case hostDirectoryIsLink(path: String)
    case missingHostDirectory(path: String)
    case unreadable(path: String, reason: String)
    case tooLarge(limit: String)
    case nameNotUTF8(directory: String)
    case missingRole(path: String)
    case roleWithoutModule(path: String)
    case reservedForRoles(path: String)

    public var description: String {
        switch self {
        case .linkOutsideRepository(let link, let target):
            return
                "link \(link) -> \(target) leads outside the fleet repository; copy the file into the repository or common/"
        case .linkIntoOtherHost(let link, let target, let other):
            return "link \(link) -> \(target) leads into host \(other)'s tree; move what both share into common/"
        case .linkIntoSecrets(let link, let target):
            return
                "link \(link) -> \(target) leads into secrets/; secrets travel beside the configuration, never inside it (refer to them by their path on the host)"
        case .linkIntoGitDirectory(let link, let target):
            return "link \(link) -> \(target) leads into the repository's .git directory"
        case .brokenLink(let link, let target):
            return "link \(link) -> \(target) is broken (its target does not exist)"
        case .linkCycle(let link, let target):
            return "link \(link) -> \(target) forms a cycle"
        case .hardlinkIntoSecrets(let path, let other):
            return
                "\(path) is a hard link to \(other), under secrets/; secrets travel beside the configuration, never inside it or to another host (copy the file, or refer to the secret by its path on the host)"
        case .hardlinkIntoOtherHost(let path, let other, let otherHost):
            return
                "\(path) is a hard link to \(other), in host \(otherHost)'s tree; copy it, or move what both share into common/"
        case .linkInSecrets(let path, let target):
            return "\(path) -> \(target) is a symbolic link; secrets must be plain files"
        case .specialFile(let path):
            return "\(path) is not a regular file, directory or symbolic link (device, fifo or socket); remove it"
        case .hostDirectoryIsLink(let path):
            return "\(path) is a symbolic link; a host directory must be a real directory"
        case .missingHostDirectory(let path):
            return "\(path) does not exist"
        case .unreadable(let path, let reason):
            return "cannot read \(path): \(reason)"
        case .tooLarge(let limit):
            return "the host's tree exceeds \(limit)"
        case .nameNotUTF8(let directory):
            return "\(directory) holds a file name that is not valid UTF-8; rename it"
        case .missingRole(let path):
            return "the role directory \(path) does not exist; create it, or remove the role from fleet.toml"
        case .roleWithoutModule(let path):
            return "\(path) is missing: a role's modules are imported through its default.nix"
        case .reservedForRoles(let path):
            return
                "\(path) is where fleet puts the host's roles (fleet.toml gives it roles); rename or remove it, and import ./fleet-roles.nix instead"
        }
    }
}

/// A host's tree could not be resolved; nothing of it is published.
public struct ResolutionError: Error, CustomStringConvertible, Sendable {
    public let host: HostName
    public let problems: [ResolutionProblem]

    public var description: String {
        "host \(host): " + problems.map(\.description).joined(separator: "; ")
    }
}
