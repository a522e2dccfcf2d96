internal import CLibSSH

/// OpenSSH's `posix-rename@openssh.com`, which libssh 0.10 lacks.
///
/// libssh 0.10's `sftp_rename` sends the plain SFTP v3 RENAME, which OpenSSH implements with `link` and
/// `unlink` and therefore refuses when the target exists (verified: "SFTP server: Failure", status 4).
/// Replacing a report in place needs POSIX `rename(2)` semantics, so this sends the extended request
/// itself on the SFTP channel (see `SFTPClient+RawRequests.swift`).
extension SFTPClient {
    private static let posixRename = "posix-rename@openssh.com"

    /// Renames `source` to `target`, replacing the target atomically when the server supports posix-rename.
    func rename(from source: String, to target: String) throws(SSHError) {
        let sftp = try requireSFTP("rename", source)
        let what = "\(source) to \(target)"
        guard serverExtensions[Self.posixRename] == "1" else {
            guard sftp_rename(sftp, source, target) == SSH_OK else { throw failure("rename", path: what) }
            return
        }
        var body: [UInt8] = []
        body.appendString(Array(Self.posixRename.utf8))
        body.appendString(Array(source.utf8))
        body.appendString(Array(target.utf8))
        let reply = try exchange([(.extended, body)], operation: "rename", path: what)[0]
        try expectOK(reply, "rename", path: what)
    }
}
