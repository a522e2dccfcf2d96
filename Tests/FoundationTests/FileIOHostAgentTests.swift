import FleetFiles
import FleetProtocol
import FleetTestSupport
import Glibc
import Testing

/// The file operations the host agent uses instead of POSIX calls (FileIO+HostAgent), and the one file digest.
@Suite("FileIO for the host agent")
struct FileIOHostAgentTests {
    @Test func aSymlinkIsReplacedInPlaceAndRemovedWithoutItsTarget() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.writeFile("a", text: "A")
        let link = directory.path("current")
        try FileIO.replaceSymlink(link, pointingTo: "a")
        try FileIO.replaceSymlink(link, pointingTo: "b")
        #expect(try FileIO.readLink(link) == "b")
        #expect(try FileIO.listDirectory(directory.path).sorted() == ["a", "current"])
        try FileIO.removeFile(link)
        try FileIO.removeFile(link)
        #expect(try FileIO.listDirectory(directory.path) == ["a"])
    }

    @Test func makeDirectoryRefusesAnExistingPathEvenADanglingLink() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try FileIO.createNewDirectory(directory.path("new"), mode: 0o700)
        #expect(try FileStatus.of(directory.path("new"))?.permissions == 0o700)
        try FileIO.replaceSymlink(directory.path("dangling"), pointingTo: "nowhere")
        for existing in ["new", "dangling"] {
            let error = try #require(throws: FileSystemError.self) {
                try FileIO.createNewDirectory(directory.path(existing), mode: 0o700)
            }
            #expect(error.errno == EEXIST, "\(existing)")
        }
        try FileIO.rename(directory.path("new"), to: directory.path("moved"))
        try FileIO.removeEmptyDirectory(directory.path("moved"))
        #expect(try FileStatus.of(directory.path("moved")) == nil)
    }

    @Test func theFileDigestIsTheBytesDigestAndRefusesALink() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        // More than one chunk of 1 MiB, and not a multiple of it.
        let bytes = (0..<(3 << 19) + 7).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try directory.writeFile("snapshot", bytes)
        #expect(try SHA256Hasher.hex(ofFile: directory.path("snapshot")) == SHA256Hasher.hex(bytes))
        try FileIO.replaceSymlink(directory.path("link"), pointingTo: "snapshot")
        #expect(throws: FileSystemError.self) { try SHA256Hasher.hex(ofFile: directory.path("link")) }
    }
}
