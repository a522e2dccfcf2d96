import Foundation
import Glibc

/// A throwaway system user (and its group) for sshd tests, removed by ``remove()`` (call it in a `defer`).
///
/// The account has no home (`/`), the nologin shell, and the password field `*`: useradd's locked `!` makes
/// sshd refuse the user when `UsePAM no`, while `*` only means that no password matches.
public struct TestUser: Sendable {
    public let name: String
    public let uid: UInt32
    public let gid: UInt32

    /// Creates `<prefix>-<random>`; the prefix must start with a lowercase letter, and the name stays ≤ 32.
    ///
    /// - Parameter shell: the login shell; sshd runs a `ForceCommand` other than internal-sftp through it.
    public static func create(prefix: String = "ft", shell: String = "/usr/sbin/nologin") throws -> TestUser {
        guard let first = prefix.unicodeScalars.first, ("a"..."z").contains(first),
            prefix.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }), prefix.count <= 20
        else {
            throw TestSupportError("User name prefix \"\(prefix)\" must start with a-z, use a-z0-9-, and be ≤ 20.")
        }
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        let name = prefix + "-" + String((0..<10).map { _ in alphabet.randomElement()! })
        let arguments = [
            "--system", "--no-create-home", "--home-dir", "/", "--shell", shell, "--user-group", name,
        ]
        try retryingLock { try TestCommand.run("/usr/sbin/useradd", arguments) }
        do {
            try retryingLock { try TestCommand.run("/usr/sbin/usermod", ["-p", "*", name]) }
            guard let entry = getpwnam(name) else { throw TestSupportError("useradd did not create \(name).") }
            return TestUser(name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
        } catch {
            TestUser(name: name, uid: 0, gid: 0).remove()
            throw error
        }
    }

    /// Deletes the user and its group; never fails, so it is safe in `defer`.
    ///
    /// Never `userdel -r` or `-f`: the home directory is `/`.
    public func remove() {
        _ = try? Self.retryingLock { try TestCommand.run("/usr/sbin/userdel", [name]) }
        if getgrnam(name) != nil {
            _ = try? Self.retryingLock { try TestCommand.run("/usr/sbin/groupdel", [name]) }
        }
    }

    /// Runs a shadow-utils command, retrying while another test holds the passwd/group lock.
    @discardableResult
    private static func retryingLock(_ body: () throws -> TestCommand.Output) throws -> TestCommand.Output {
        var output = try body()
        var attempt = 0
        while !output.succeeded, isTransient(output.standardError), attempt < 50 {
            attempt += 1
            usleep(100_000)
            output = try body()
        }
        guard output.succeeded else {
            throw TestSupportError("User administration failed with \(output.status): \(output.standardError)")
        }
        return output
    }

    /// Another tool holds the lock, or a session of the user is still exiting.
    private static func isTransient(_ message: String) -> Bool {
        message.contains("lock") || message.contains("busy") || message.contains("currently used by process")
    }
}
