import FleetFiles
import Inventory

/// sshd refuses a `ChrootDirectory` (and, with StrictModes, an authorized keys file) unless every
/// component of its path is a root-owned directory that group and others cannot write. This checks the
/// same rule first, so the sysadmin gets the name of the component to fix instead of a failed login.
public enum PathSafety {
    /// Checks `path` and each of its ancestors that exist; returns the first offending component.
    public static func check(_ path: String) throws(SetupError) {
        guard path.hasPrefix("/") else { throw SetupError("\(path) must be an absolute path") }
        // The same rule fleet.toml and the flags are held to: what validates there is accepted here.
        if let problem = FleetConfiguration.Server.problem(withPath: path) { throw SetupError("\(path) \(problem)") }
        var components = ["/"]
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            components.append(current)
        }
        for component in components {
            let status: FileStatus?
            do {
                status = try FileStatus.of(component)
            } catch {
                throw SetupError("cannot inspect \(component): \(error)")
            }
            guard let status else { return }  // the rest will be created by fleet, root-owned 0755
            if status.kind == .symbolicLink {
                throw SetupError(
                    "\(component) is a symbolic link; give fleet the real path (sshd checks the link's target, fleet checks the path it is given)"
                )
            }
            guard status.kind == .directory else { throw SetupError("\(component) is not a directory") }
            guard status.owner == 0 else {
                throw SetupError(
                    "\(component) is owned by uid \(status.owner), not root; sshd refuses chroot paths below it (chown root \(component), or choose another chroot root)"
                )
            }
            guard !status.isWritableByGroupOrOthers else {
                throw SetupError(
                    "\(component) is writable by group or others (mode \(String(status.permissions, radix: 8))); sshd refuses chroot paths below it (e.g. /tmp): choose a root-owned 0755 path such as /srv/fleet"
                )
            }
        }
    }
}
