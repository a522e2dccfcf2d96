import Foundation
import Glibc

/// A fresh directory for one test, removed by ``remove()`` (call it in a `defer`).
///
/// ``makeRootOwned()`` is for anything sshd inspects: chroots and authorized_keys must have only root-owned,
/// non-group/other-writable ancestors, which rules out `/tmp` (mode 1777). ``makeTemporary()`` is for the
/// rest.
public struct TestDirectory: Sendable {
    /// The parent of every root-owned test directory.
    public static let rootOwnedBase = "/var/lib/fleet-test"
    private static let temporaryPrefix = "/tmp/fleet-test-"

    public let path: String

    private init(path: String) {
        self.path = path
    }

    /// Creates `/var/lib/fleet-test/<uuid>`, root-owned 0755, after checking every ancestor is safe for sshd.
    public static func makeRootOwned() throws -> TestDirectory {
        try ensureDirectory(rootOwnedBase, mode: 0o755)
        let directory = TestDirectory(path: "\(rootOwnedBase)/\(UUID().uuidString.lowercased())")
        try directory.makeDirectory("", mode: 0o755)
        try checkAncestorsAreRootOnly(of: directory.path)
        return directory
    }

    /// Creates `/tmp/fleet-test-<uuid>` (0700), for tests that need no sshd.
    public static func makeTemporary() throws -> TestDirectory {
        let directory = TestDirectory(path: temporaryPrefix + UUID().uuidString.lowercased())
        try directory.makeDirectory("", mode: 0o700)
        return directory
    }

    /// The absolute path of `relative` inside this directory.
    public func path(_ relative: String) -> String {
        relative.isEmpty ? path : "\(path)/\(relative)"
    }

    /// Creates a directory inside this one with exactly `mode` (umask ignored) and the given owner.
    public func makeDirectory(_ relative: String, mode: UInt32 = 0o755, owner: UInt32 = 0, group: UInt32 = 0) throws {
        let target = path(relative)
        guard mkdir(target, mode) == 0 else { throw Self.failure("mkdir", target) }
        try Self.setOwnerAndMode(target, owner: owner, group: group, mode: mode)
    }

    /// Writes a file inside this one with exactly `mode` and the given owner.
    public func writeFile(
        _ relative: String, _ bytes: [UInt8], mode: UInt32 = 0o644, owner: UInt32 = 0, group: UInt32 = 0
    ) throws {
        let target = path(relative)
        guard FileManager.default.createFile(atPath: target, contents: Data(bytes)) else {
            throw TestSupportError("Could not write \(target).")
        }
        try Self.setOwnerAndMode(target, owner: owner, group: group, mode: mode)
    }

    /// Writes UTF-8 text; see ``writeFile(_:_:mode:owner:group:)``.
    public func writeFile(
        _ relative: String, text: String, mode: UInt32 = 0o644, owner: UInt32 = 0, group: UInt32 = 0
    ) throws {
        try writeFile(relative, Array(text.utf8), mode: mode, owner: owner, group: group)
    }

    /// Reads a file inside this one.
    public func readFile(_ relative: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path(relative)) else {
            throw TestSupportError("Could not read \(path(relative)).")
        }
        return [UInt8](data)
    }

    /// Deletes the directory and everything in it; never fails, so it is safe in `defer`.
    ///
    /// Refuses paths outside the two test bases, as a guard against a corrupted value.
    public func remove() {
        guard path.hasPrefix(Self.rootOwnedBase + "/") || path.hasPrefix(Self.temporaryPrefix) else { return }
        try? FileManager.default.removeItem(atPath: path)
    }

    // MARK: Helpers

    private static func ensureDirectory(_ path: String, mode: mode_t) throws {
        if mkdir(path, mode) != 0, errno != EEXIST { throw failure("mkdir", path) }
        var status = stat()
        guard stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFDIR else {
            throw TestSupportError("\(path) is not a directory.")
        }
    }

    private static func setOwnerAndMode(_ path: String, owner: uid_t, group: gid_t, mode: mode_t) throws {
        guard chown(path, owner, group) == 0 else { throw failure("chown", path) }
        guard chmod(path, mode) == 0 else { throw failure("chmod", path) }
    }

    /// sshd's rule for ChrootDirectory and key files: every component root-owned and writable by root only.
    private static func checkAncestorsAreRootOnly(of path: String) throws {
        var current = ""
        for component in [""] + path.split(separator: "/").map(String.init) {
            current = component.isEmpty ? "/" : (current == "/" ? "/\(component)" : "\(current)/\(component)")
            var status = stat()
            guard stat(current, &status) == 0 else { throw failure("stat", current) }
            guard status.st_uid == 0, status.st_mode & 0o022 == 0 else {
                let mode = String(status.st_mode & 0o7777, radix: 8)
                throw TestSupportError(
                    "\(current) is owned by uid \(status.st_uid) with mode \(mode); sshd needs root-owned, "
                        + "not group- or other-writable ancestors.")
            }
        }
    }

    private static func failure(_ call: String, _ path: String) -> TestSupportError {
        TestSupportError("\(call) \(path) failed: \(String(cString: strerror(errno))).")
    }
}
