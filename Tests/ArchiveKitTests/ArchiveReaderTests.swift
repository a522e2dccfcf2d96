@_spi(Testing) import ArchiveKit
import FleetTestSupport
import Glibc
import Testing

@Suite("ArchiveReader")
struct ArchiveReaderTests {
    @Test("links, devices and FIFOs are reported with their kinds and targets")
    func reportsEveryKind() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addRawEntry(path: "file", kind: .regularFile, permissions: 0o4755, bytes: [1, 2])
        try writer.addRawEntry(path: "link", kind: .symbolicLink(target: "/etc/shadow"), permissions: 0o777)
        try writer.addRawEntry(path: "hard", kind: .hardLink(target: "file"), permissions: 0o644)
        try writer.addRawEntry(path: "null", kind: .characterDevice(major: 1, minor: 3), permissions: 0o666)
        try writer.addRawEntry(path: "sda", kind: .blockDevice(major: 8, minor: 0), permissions: 0o660)
        try writer.addRawEntry(path: "pipe", kind: .fifo, permissions: 0o644)
        try writer.finish()

        let reader = try ArchiveReader(path: directory.path("a.tar.zst"))
        var headers: [ArchiveEntryHeader] = []
        while let header = try reader.nextEntry() { headers.append(header) }
        #expect(headers.map(\.path) == ["file", "link", "hard", "null", "sda", "pipe"])
        #expect(
            headers.map(\.kind) == [
                .regularFile, .symbolicLink(target: "/etc/shadow"), .hardLink(target: "file"),
                .other(description: "character device 1,3"), .other(description: "block device 8,0"),
                .other(description: "FIFO"),
            ])
        #expect(headers[0].permissions == 0o4755)
        #expect(headers[0].size == 2)
    }

    @Test("data past the limit is refused, naming the entry")
    func dataLimit() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addFile("big", permissions: 0o644, bytes: noise(count: 100_000))
        try writer.finish()

        let reader = try ArchiveReader(path: directory.path("a.tar.zst"))
        _ = try reader.nextEntry()
        let error = #expect(throws: ArchiveError.self) { try reader.readData(limit: 99_999) }
        #expect(error?.code == .limitExceeded)
        #expect(error?.entry == "big")
    }

    @Test("data streams to a file descriptor")
    func copyToDescriptor() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let contents = noise(count: 300_000)
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addFile("big", permissions: 0o644, bytes: contents)
        try writer.finish()

        let reader = try ArchiveReader(path: directory.path("a.tar.zst"))
        #expect(try reader.nextEntry()?.path == "big")
        let fd = open(directory.path("copy"), O_WRONLY | O_CREAT | O_EXCL, 0o600)
        #expect(fd >= 0)
        let copied = try reader.copyData(toFileDescriptor: fd, limit: 300_000)
        close(fd)
        #expect(copied == 300_000)
        #expect(try readBytes(directory.path("copy")) == contents)
        #expect(try reader.nextEntry() == nil)
    }

    @Test("a file that is not an archive, or is missing, fails with the path in the message")
    func notAnArchive() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try writeBytes(Array("just text, not a tar archive\n".utf8), to: directory.path("text"))

        let text = #expect(throws: ArchiveError.self) { try entryPaths(directory.path("text")) }
        #expect(text?.code == .library)
        #expect(
            text?.description.hasPrefix("Failed on archive \(directory.path("text")): libarchive could not") == true)
        let missing = #expect(throws: ArchiveError.self) { try ArchiveReader(path: directory.path("missing")) }
        #expect(missing?.systemError == ENOENT)
        let notFile = #expect(throws: ArchiveError.self) { try ArchiveReader(path: directory.path) }
        #expect(notFile?.reason == "it is not a regular file")
    }

    @Test("reading data with no current entry is a misuse")
    func dataWithoutEntry() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try SnapshotWriter(path: directory.path("a.tar.zst")).finish()
        let reader = try ArchiveReader(path: directory.path("a.tar.zst"))
        let error = #expect(throws: ArchiveError.self) { try reader.readData(limit: 10) }
        #expect(error?.code == .misuse)
    }
}
