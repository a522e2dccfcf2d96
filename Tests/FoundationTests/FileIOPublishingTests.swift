import FleetFiles
import FleetTestSupport
import Glibc
import Testing

/// The file operations the publisher and `fleet` use instead of calling POSIX themselves.
@Suite("FleetFiles for the publisher")
struct FileIOPublishingTests {
    @Test func aDescriptorIsClosedAfterItsScopeEvenWhenItThrows() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let path = directory.path("file")
        try FileIO.writeAtomically(Array("content".utf8), to: path)
        let (descriptor, _) = try FileIO.openRegularNoFollow(path)
        let size = try FileIO.closeAfter(descriptor) { try FileStatus.of(descriptor: $0, path: path).size }
        #expect(size == 7)
        #expect(!Self.isOpen(descriptor, on: path), "closed on return")
        struct Stop: Error {}
        let (second, _) = try FileIO.openRegularNoFollow(path)
        #expect(Self.isOpen(second, on: path))
        #expect(throws: Stop.self) { try FileIO.closeAfter(second) { _ in throw Stop() } }
        #expect(!Self.isOpen(second, on: path), "closed on throw")
    }

    /// Whether `descriptor` is open on `path`. Not `fcntl(F_GETFD)`: the tests run in parallel in one process, and
    /// another test's open may take the number as soon as it is closed.
    static func isOpen(_ descriptor: Int32, on path: String) -> Bool {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/fd/\(descriptor)", &buffer, buffer.count - 1)
        guard count > 0, let resolved = realpath(path, nil) else { return false }
        defer { free(resolved) }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            == String(cString: resolved)
    }

    @Test func aFileIsReadInChunksToItsEnd() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let path = directory.path("file")
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try FileIO.writeAtomically(bytes, to: path)
        var read: [UInt8] = []
        var chunks = 0
        try FileIO.forEachChunk(ofFile: path, chunkSize: 4096) {
            read += $0
            chunks += 1
        }
        #expect(read == bytes && chunks == 3)
        #expect(throws: FileSystemError.self) { try FileIO.forEachChunk(ofFile: directory.path("missing")) { _ in } }
    }

    @Test func removingRenamingAndPermissionsNameThePathWhenTheyFail() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let (source, destination) = (directory.path("new"), directory.path("current"))
        try FileIO.writeAtomically(Array("old".utf8), to: destination)
        try FileIO.writeAtomically(Array("new".utf8), to: source, mode: 0o600)
        try FileIO.setMode(source, 0o640)
        #expect(try FileStatus.of(source)?.permissions == 0o640)
        try FileIO.renameDurably(source, to: destination)
        #expect(try FileIO.read(destination) == Array("new".utf8) && (try FileStatus.of(source)) == nil)
        #expect(throws: FileSystemError.self) { try FileIO.renameDurably(source, to: destination) }

        try FileIO.removeFile(destination)
        #expect(try FileStatus.of(destination) == nil)
        try FileIO.removeFile(destination)  // already gone: not an error
        try FileIO.createDirectories(directory.path("sub"))
        #expect(throws: FileSystemError.self) { try FileIO.removeFile(directory.path("sub")) }
        #expect(try FileStatus.of(directory.path("sub"))?.kind == .directory, "never a directory")
    }

    @Test func onlyAFileOfThisUserThatNoOneElseCanWriteIsPrivate() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let path = directory.path("digests")
        try FileIO.writeAtomically([], to: path, mode: 0o600)
        #expect(FileIO.isPrivateToEffectiveUser(try #require(try FileStatus.of(path))))
        for mode: UInt32 in [0o620, 0o602] {
            try FileIO.setMode(path, mode)
            #expect(!FileIO.isPrivateToEffectiveUser(try #require(try FileStatus.of(path))), "\(mode)")
        }
        #expect(FileIO.isTerminal(-1) == false)
    }
}
