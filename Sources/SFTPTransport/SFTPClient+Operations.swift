internal import CLibSSH
import Glibc

/// Single-request SFTP operations: metadata, listing, removal, paths, extensions.
extension SFTPClient {
    func attributes(_ path: String, followingLinks: Bool) throws(SSHError) -> RemoteAttributes? {
        let sftp = try requireSFTP("stat", path)
        guard let attributes = followingLinks ? sftp_stat(sftp, path) : sftp_lstat(sftp, path) else {
            let failure = failure("stat", path: path)
            if failure.code == .noSuchFile { return nil }
            throw failure
        }
        defer { sftp_attributes_free(attributes) }
        return RemoteAttributes(attributes.pointee)
    }

    func listDirectory(_ path: String, limit: Int) throws(SSHError) -> [RemoteDirectoryEntry] {
        let sftp = try requireSFTP("list", path)
        guard let directory = sftp_opendir(sftp, path) else { throw failure("list", path: path) }
        defer { sftp_closedir(directory) }
        var entries: [RemoteDirectoryEntry] = []
        while true {
            guard let attributes = sftp_readdir(sftp, directory) else {
                if sftp_dir_eof(directory) != 0 { break }
                throw failure("list", path: path)
            }
            defer { sftp_attributes_free(attributes) }
            watchdog.progress()
            let name = attributes.pointee.name.map { String(cString: $0) } ?? ""
            if name.isEmpty || name == "." || name == ".." { continue }
            guard entries.count < limit else {
                throw error(.limitExceeded, "list", path: path, detail: "it has more than \(limit) entries")
            }
            entries.append(RemoteDirectoryEntry(name: name, attributes: RemoteAttributes(attributes.pointee)))
        }
        return entries
    }

    func remove(_ path: String) throws(SSHError) {
        let sftp = try requireSFTP("remove", path)
        guard sftp_unlink(sftp, path) == SSH_OK else { throw failure("remove", path: path) }
    }

    func canonicalize(_ path: String) throws(SSHError) -> String {
        let sftp = try requireSFTP("resolve", path)
        guard let resolved = sftp_canonicalize_path(sftp, path) else { throw failure("resolve", path: path) }
        defer { ssh_string_free_char(resolved) }
        return String(cString: resolved)
    }

    /// Whether the server offers an SFTP protocol extension, such as `posix-rename@openssh.com`.
    func supportsExtension(_ name: String, version: String) throws(SSHError) -> Bool {
        _ = try requireSFTP("query", name)
        return serverExtensions[name] == version
    }
}

extension RemoteAttributes {
    /// Converts libssh's attributes, preferring the mode bits over libssh's derived type field.
    init(_ raw: sftp_attributes_struct) {
        let hasPermissions = raw.flags & UInt32(SSH_FILEXFER_ATTR_PERMISSIONS) != 0
        let kind: Kind
        if hasPermissions {
            switch raw.permissions & 0o170_000 {
            case 0o100_000: kind = .regular
            case 0o040_000: kind = .directory
            case 0o120_000: kind = .symbolicLink
            default: kind = .other
            }
        } else {
            switch Int32(raw.type) {
            case SSH_FILEXFER_TYPE_REGULAR: kind = .regular
            case SSH_FILEXFER_TYPE_DIRECTORY: kind = .directory
            case SSH_FILEXFER_TYPE_SYMLINK: kind = .symbolicLink
            default: kind = .other
            }
        }
        let hasSize = raw.flags & UInt32(SSH_FILEXFER_ATTR_SIZE) != 0
        let hasOwner = raw.flags & UInt32(SSH_FILEXFER_ATTR_UIDGID) != 0
        self.init(
            kind: kind, size: hasSize ? Int64(clamping: raw.size) : 0,
            permissions: hasPermissions ? raw.permissions & 0o7777 : 0,
            uid: hasOwner ? raw.uid : 0, gid: hasOwner ? raw.gid : 0, modificationTime: Int64(raw.mtime))
    }
}
