import Glibc

/// Look-ups in the user and group databases.
public enum Accounts {
    public struct User: Sendable, Equatable {
        public let name: String
        public let uid: UInt32
        public let gid: UInt32
        public let home: String
        public let shell: String
        public let comment: String
    }

    public static func user(named name: String) -> User? {
        guard let entry = getpwnam(name) else { return nil }
        let record = entry.pointee
        return User(
            name: name, uid: record.pw_uid, gid: record.pw_gid, home: String(cString: record.pw_dir),
            shell: String(cString: record.pw_shell), comment: String(cString: record.pw_gecos))
    }

    public static func groupID(named name: String) -> UInt32? {
        guard let entry = getgrnam(name) else { return nil }
        return entry.pointee.gr_gid
    }

    /// This process's real user ID (the owner given to what a run creates for itself).
    public static var currentUserID: UInt32 { getuid() }
    /// This process's real group ID.
    public static var currentGroupID: UInt32 { getgid() }
    /// This process's effective user ID (whose files a cache may trust).
    public static var effectiveUserID: UInt32 { geteuid() }
}
