import FleetFiles
import FleetProtocol
import Glibc
import Synchronization

/// SHA-256 of files, remembered by identity (device, inode, size, mtime) for the length of one publish,
/// so that a `common/` module shared by a thousand hosts is read once.
final class FileDigestCache: Sendable {
    private struct Identity: Hashable {
        let device: UInt64
        let inode: UInt64
        let size: Int64
        let seconds: Int64
        let nanoseconds: Int64
    }

    private let digests = Mutex<[Identity: String]>([:])

    func digest(of path: String, status: FileStatus) throws(FileSystemError) -> String {
        let identity = Identity(
            device: status.device, inode: status.inode, size: status.size, seconds: status.modificationSeconds,
            nanoseconds: status.modificationNanoseconds)
        if let known = digests.withLock({ $0[identity] }) { return known }
        let digest = try Self.sha256(ofFile: path)
        digests.withLock { $0[identity] = digest }
        return digest
    }

    /// Streams a file through SHA-256.
    static func sha256(ofFile path: String) throws(FileSystemError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError("open", path: path) }
        defer { close(fd) }
        var hasher = SHA256Hasher()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = read(fd, buffer.baseAddress, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw FileSystemError("read", path: path)
            }
            if count == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        return hasher.finalizeHex()
    }
}
