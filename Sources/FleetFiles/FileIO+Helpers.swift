import Crypto
import Glibc
public import SystemPackage

extension FileIO {
    /// The SHA-256 of what `descriptor` reads from its offset to the end, in lowercase hex: `SHA256Hasher.hex(ofFile:)`
    /// (a regular file, no link) and the publisher's digest cache use it.
    public static func sha256(of descriptor: FileDescriptor, path: String) throws(FileSystemError) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        for byte in try sha256Digest(of: descriptor, path: path) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// The SHA-256 of what `descriptor` reads from its offset to the end, as its 32 bytes, read in chunks
    /// (snapshots and NARs can be large): the one streaming digest, whatever the encoding (hex, Nix's base32).
    public static func sha256Digest(of descriptor: FileDescriptor, path: String) throws(FileSystemError) -> [UInt8] {
        var hasher = SHA256()
        try forEachChunk(of: descriptor, path: path, chunkSize: 256 << 10) { chunk in
            hasher.update(bufferPointer: chunk)
        }
        return Array(hasher.finalize())
    }

    /// Points the symbolic link `path` at `target`, atomically: a new link under a temporary name, renamed over
    /// `path`. Readers see the old target or the new one, never no link.
    public static func replaceSymlink(_ path: String, pointingTo target: String) throws(FileSystemError) {
        let temporary = temporaryPath(for: path)
        _ = try? removeFile(temporary)
        _ = try FileSystemError.attempt("symlink", path: temporary) { () throws(Errno) in
            try Syscall.retrying { symlink(target, temporary) }
        }
        do {
            try rename(temporary, to: path)
        } catch {
            _ = try? removeFile(temporary)
            throw error
        }
    }

    /// Moves a finished file from its temporary name to `path` (rename, atomic), removing the temporary when
    /// the rename fails; then, when `durable`, flushes the directory so the new name survives a crash. For files
    /// written elsewhere than ``writeAtomically(_:to:mode:owner:group:durable:beforeRename:)`` (a download, or
    /// a staging name readers must not see, as `fleet metrics --output` uses).
    public static func publishByRename(
        _ temporary: String, to path: String, durable: Bool = true
    ) throws(FileSystemError) {
        do {
            try rename(temporary, to: path)
        } catch {
            _ = try? removeFile(temporary)
            throw error
        }
        if durable { try syncDirectory(of: path) }
    }

    /// Creates the directory `path`, which must not exist: any name already there, a dangling symbolic link
    /// included, is refused (`EEXIST`), so the directory made is certainly this process's.
    public static func createNewDirectory(_ path: String, mode: UInt32) throws(FileSystemError) {
        _ = try FileSystemError.attempt("mkdir", path: path) { () throws(Errno) in
            try Syscall.retrying { mkdir(path, mode) }
        }
    }

    /// Removes the directory `path`, which must be empty (`rmdir`).
    public static func removeEmptyDirectory(_ path: String) throws(FileSystemError) {
        _ = try FileSystemError.attempt("rmdir", path: path) { () throws(Errno) in
            try Syscall.retrying { rmdir(path) }
        }
    }

    /// Whether this process may execute `path` (`access(X_OK)`, with the real user's rights).
    public static func isExecutable(_ path: String) -> Bool {
        (try? Syscall.retrying { access(path, X_OK) }) != nil
    }

    /// `path` made absolute against the current directory, `.` and `..` components and repeated or trailing
    /// slashes resolved by the text alone, without looking at the file system (so a `..` after a link is
    /// taken literally, and `~` is a name like any other: the shell expands it, fleet does not).
    public static func absolute(_ path: String) -> String {
        var full = FilePath(path)
        if !full.isAbsolute {
            full = FilePath(currentDirectory()).pushing(full)
        }
        full.lexicallyNormalize()
        return full.string
    }

    /// The current working directory, or `/` when it cannot be named (it was removed).
    public static func currentDirectory() -> String {
        guard let raw = getcwd(nil, 0) else { return "/" }
        defer { free(raw) }
        return String(cString: raw)
    }

    /// `$TMPDIR`, or `/tmp` when it is unset or empty.
    public static var temporaryDirectory: String {
        guard let value = getenv("TMPDIR"), value.pointee != 0 else { return "/tmp" }
        return String(cString: value)
    }

    /// A new file in `directory` holding `bytes`, already unlinked (nothing is left behind, whatever happens
    /// to the process), opened for reading and writing at its start; the caller closes it. For a child's
    /// standard input: unlike a pipe, it never blocks the writer, whatever the size.
    ///
    /// - Parameter prefix: the start of the file's short-lived name (`mkstemp` adds six characters).
    public static func unlinkedFile(
        containing bytes: [UInt8], in directory: String = temporaryDirectory, prefix: String
    ) throws(FileSystemError) -> FileDescriptor {
        // mkstemp(3) replaces the six trailing X of its template with a unique name.
        var template = Array((directory + "/" + prefix + String(repeating: "X", count: 6)).utf8CString)
        let raw = try FileSystemError.attempt("create", path: directory + "/" + prefix) { () throws(Errno) in
            try Syscall.retrying { template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) } }
        }
        let descriptor = FileDescriptor(rawValue: raw)
        // Glibc's Swift module has no mkostemp (it needs _GNU_SOURCE): close-on-exec is set just after.
        _ = fcntl(raw, F_SETFD, FD_CLOEXEC)
        let name = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        do throws(FileSystemError) {
            try removeFile(name)
            try writeAll(descriptor, bytes, path: name)
            _ = try FileSystemError.attempt("lseek", path: name) { () throws(Errno) in
                try Syscall.retrying { lseek(descriptor.rawValue, 0, SEEK_SET) }
            }
        } catch {
            _ = try? removeFile(name)
            Syscall.close(descriptor)
            throw error
        }
        return descriptor
    }
}
