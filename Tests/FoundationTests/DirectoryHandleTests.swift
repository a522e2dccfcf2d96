import FleetFiles
import FleetTestSupport
import Foundation
import Glibc
import Testing

/// ``DirectoryHandle`` against what a host could plant in its `logs/`, and worse: every refusal says why,
/// blocks nothing, and leaves every file (and what a link points to) as it was.
@Suite("directory handle")
struct DirectoryHandleTests {
    @Test func aMissingDirectoryIsNilAndALinkOrAFileIsRefused() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        #expect(try DirectoryHandle.open(directory.path("missing")) == nil)
        try directory.makeDirectory("real", mode: 0o700)
        #expect(symlink(directory.path("real"), directory.path("link")) == 0)
        try directory.writeFile("file", text: "x")
        for name in ["link", "file"] {
            #expect(throws: FileRefusal(.refused, "is not a directory (a link or a file)")) {
                try DirectoryHandle.open(directory.path(name))
            }
        }
        #expect(try DirectoryHandle.open(directory.path("real"))?.path == directory.path("real"))
    }

    @Test func namesAreCappedAndListedFromTheStartEachTime() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        for index in 0..<5 { try directory.writeFile("f\(index)", text: "\(index)") }
        let handle = try #require(try DirectoryHandle.open(directory.path))
        let capped = handle.names(limit: 3)
        #expect(capped.names.count == 3 && capped.more)
        let all = handle.names(limit: 10)
        #expect(all.names.sorted() == ["f0", "f1", "f2", "f3", "f4"] && !all.more)
        #expect(handle.names(limit: 10).names == all.names, "a second listing starts again at the beginning")
    }

    @Test func aSymbolicLinkIsNotFollowedAndStaysWithItsTarget() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.writeFile("outside", text: "the server's secret")
        try directory.makeDirectory("logs", mode: 0o700)
        #expect(symlink(directory.path("outside"), directory.path("logs/report.json")) == 0)
        let handle = try #require(try DirectoryHandle.open(directory.path("logs")))

        let refusal = try refusal { try handle.read("report.json", limit: 1 << 20) }
        #expect(refusal.kind == .refused && refusal.reason == "is a symbolic link: not followed")
        #expect(refusal.status?.kind == .symbolicLink, "bookkept by the link's own identity")
        let ends = try self.refusal { try handle.readEnds("report.json", head: 4, tail: 4) }
        #expect(ends.reason == "is a symbolic link: not followed")
        #expect(!handle.removeFile("report.json", ifStill: { _ in true }), "only regular files are removed")
        #expect(try FileStatus.of(directory.path("logs/report.json"))?.kind == .symbolicLink)
        #expect(try String(contentsOfFile: directory.path("outside"), encoding: .utf8) == "the server's secret")
    }

    @Test func aFIFOIsRefusedWithoutBlocking() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        #expect(mkfifo(directory.path("heartbeat.json"), 0o600) == 0)
        let handle = try #require(try DirectoryHandle.open(directory.path))
        let refusal = try refusal { try handle.read("heartbeat.json", limit: 1 << 10) }
        #expect(refusal.kind == .refused && refusal.reason == "is a FIFO, not a regular file")
        #expect(refusal.status?.isFIFO == true)
        #expect(!handle.removeFile("heartbeat.json", ifStill: { _ in true }))
        #expect(try FileStatus.of(directory.path("heartbeat.json"))?.isFIFO == true)
    }

    @Test func aHardLinkIsRefusedAndBothNamesStay() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.writeFile("secret", text: "another file's contents")
        try directory.makeDirectory("logs", mode: 0o700)
        #expect(link(directory.path("secret"), directory.path("logs/report.json")) == 0)
        let handle = try #require(try DirectoryHandle.open(directory.path("logs")))
        let refusal = try refusal { try handle.read("report.json", limit: 1 << 20) }
        #expect(refusal.kind == .refused && refusal.reason.hasPrefix("has 2 hard links"))
        #expect(refusal.status?.linkCount == 2)
        #expect(try String(contentsOfFile: directory.path("secret"), encoding: .utf8) == "another file's contents")
        #expect(try FileStatus.of(directory.path("logs/report.json"))?.linkCount == 2)
    }

    @Test func aFileOverTheCapIsRefusedUnreadAndALogKeepsItsEnds() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.writeFile("big", text: "0123456789abcdefghij")
        let handle = try #require(try DirectoryHandle.open(directory.path))
        let refusal = try refusal { try handle.read("big", limit: 19) }
        #expect(refusal.kind == .refused && refusal.reason == "is 20 bytes, over the cap of 19")
        #expect(refusal.status?.size == 20)
        #expect(try handle.read("big", limit: 20).bytes == Array("0123456789abcdefghij".utf8))

        let ends = try handle.readEnds("big", head: 4, tail: 3)
        #expect(ends.head == Array("0123".utf8) && ends.tail == Array("hij".utf8) && ends.status.size == 20)
        let whole = try handle.readEnds("big", head: 10, tail: 10)
        #expect(whole.head == Array("0123456789abcdefghij".utf8) && whole.tail == nil)
        #expect(try String(contentsOfFile: directory.path("big"), encoding: .utf8) == "0123456789abcdefghij")
    }

    @Test func aFileLongerThanItsStatusSaidIsRefused() throws {
        // /proc files say size 0 and read more: what a file written to while it is read looks like.
        let handle = try #require(try DirectoryHandle.open("/proc/\(getpid())"))
        let refusal = try refusal { try handle.read("status", limit: 1 << 20) }
        #expect(refusal.kind == .refused && refusal.reason.hasPrefix("changed while being read"))
    }

    @Test func aFileReplacedAfterItWasReadIsNotRemoved() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.writeFile("heartbeat.json", text: "first")
        let handle = try #require(try DirectoryHandle.open(directory.path))
        let first = try handle.read("heartbeat.json", limit: 1 << 10)
        #expect(first.bytes == Array("first".utf8))

        // The host replaces it by rename, as fleet-client does: the new file is not the one that was read.
        try FileIO.writeAtomically(Array("second".utf8), to: directory.path("heartbeat.json"))
        #expect(handle.status(of: "heartbeat.json")?.identity != first.status.identity)
        #expect(!handle.removeFile("heartbeat.json", ifStill: { $0.identity == first.status.identity }))
        #expect(try handle.read("heartbeat.json", limit: 1 << 10).bytes == Array("second".utf8))

        let second = try handle.read("heartbeat.json", limit: 1 << 10)
        #expect(handle.removeFile("heartbeat.json", ifStill: { $0.identity == second.status.identity }))
        #expect(handle.status(of: "heartbeat.json") == nil)
        let vanished = try refusal { try handle.read("heartbeat.json", limit: 1 << 10) }
        #expect(vanished.kind == .vanished)
    }

    @Test func theHandleKeepsItsDirectoryWhenThePathIsRenamed() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.makeDirectory("logs", mode: 0o700)
        try directory.writeFile("logs/report.json", text: "kept")
        let handle = try #require(try DirectoryHandle.open(directory.path("logs")))
        try FileIO.rename(directory.path("logs"), to: directory.path("moved"))
        try directory.makeDirectory("logs", mode: 0o700)
        try directory.writeFile("logs/report.json", text: "planted")
        #expect(try handle.read("report.json", limit: 64).bytes == Array("kept".utf8))
    }

    /// The refusal `body` throws; fails the test when it throws none.
    private func refusal(_ body: () throws -> some Any) throws -> FileRefusal {
        do {
            _ = try body()
        } catch let refusal as FileRefusal {
            return refusal
        }
        throw TestSupportError("expected a refusal")
    }
}
