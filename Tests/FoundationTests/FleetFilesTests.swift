import FleetProtocol
import FleetTestSupport
import Glibc
import Inventory
import SystemPackage
import Testing

@testable import FleetFiles

/// The pieces of FleetFiles that feature modules call instead of POSIX: the one `EINTR` rule, the scoped
/// lock, and the small helpers that had a copy in several modules.
@Suite("fleet files")
struct FleetFilesTests {
    @Test func anInterruptedCallIsMadeAgainAndAnyOtherFailureIsItsErrno() throws {
        var calls = 0
        let result = try Syscall.retrying { () -> Int32 in
            calls += 1
            if calls < 3 {
                errno = EINTR
                return -1
            }
            return 7
        }
        #expect(result == 7 && calls == 3)

        calls = 0
        #expect(throws: Errno.noSuchFileOrDirectory) {
            try Syscall.retrying { () -> Int32 in
                calls += 1
                errno = ENOENT
                return -1
            }
        }
        #expect(calls == 1)
    }

    @Test func aScopedLockIsHeldForTheBodyAndReleasedAfterEvenWhenItThrows() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let path = directory.path("lock")
        let result = try FileLock.withLock(path, wait: false) { () throws -> Int in
            // flock locks belong to an open file: a second open, even in this process, is refused.
            #expect(try FileLock.acquire(path, wait: false) == nil)
            #expect(try FileLock.withLock(path, wait: false) { "ran" } == nil, "the body does not run")
            return 42
        }
        #expect(result == 42)
        #expect(try FileLock.acquire(path, wait: false) != nil, "released after the body")

        #expect(throws: TestSupportError.self) {
            try FileLock.withLock(path, wait: false) { throw TestSupportError("body failed") }
        }
        let suspended = try await FileLock.withLock(path, wait: true) {
            try await Task.sleep(for: .milliseconds(1))
            return try FileLock.acquire(path, wait: false) == nil
        }
        #expect(suspended == true)
        #expect(try FileLock.acquire(path, wait: false) != nil, "released after a throw and after a suspension")
    }

    /// A lock is released when its value goes, even while a child forked in the meantime still has a copy of
    /// its descriptor (as a child another thread forks has until its `exec`): the next attempt takes it.
    @Test func aLockIsReleasedWhileAForkedChildStillSharesItsFile() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let path = directory.path("lock")
        var lock = try FileLock.acquire(path, wait: false)
        #expect(lock != nil)
        let child = fork()
        if child == 0 {
            // The child only sleeps (async-signal-safe calls only, in a forked multithreaded process).
            sleep(30)
            _exit(0)
        }
        #expect(child > 0)
        defer {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        withExtendedLifetime(lock) {}
        lock = nil
        #expect(try FileLock.acquire(path, wait: false) != nil, "released although the child shares the file")
    }

    @Test func byteCountsReadTheSameEverywhere() {
        #expect(ByteCount.scaled(0) == "0 B" && ByteCount.scaled(1023) == "1023 B")
        #expect(ByteCount.scaled(1536) == "1.5 KiB" && ByteCount.scaled(1280) == "1.2 KiB", "halves to even, as %.1f")
        #expect(ByteCount.scaled(391 << 20) == "391.0 MiB" && ByteCount.scaled(3 << 40 + 1 << 39) == "3.5 TiB")
        #expect(ByteCount.scaled(-2048) == "-2.0 KiB")
        #expect(ByteCount.exact(16 << 20) == "16 MiB" && ByteCount.exact(64 << 10) == "64 KiB")
        #expect(ByteCount.exact(1000) == "1000 bytes" && ByteCount.exact(0) == "0 bytes")
        #expect(ByteCount.mebibytes(12_845_056) == "12.3" && ByteCount.mebibytes(256 << 20) == "256")
    }

    @Test func sha256OfAFileIsTheDigestOfItsBytes() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try directory.writeFile("snapshot", bytes)
        let (descriptor, _) = try FileIO.openRegularNoFollow(directory.path("snapshot"))
        try FileIO.closeAfter(descriptor) { descriptor in
            let file = FileDescriptor(rawValue: descriptor)
            #expect(try FileIO.sha256(of: file, path: "snapshot") == SHA256Hasher.hex(bytes))
            // From the offset on: the rest of the file only.
            _ = try file.seek(offset: 1000, from: .start)
            #expect(try FileIO.sha256(of: file, path: "snapshot") == SHA256Hasher.hex(Array(bytes[1000...])))
        }
    }

    @Test func replaceSymlinkSwapsTheTargetAndLeavesNoTemporary() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try FileIO.replaceSymlink(directory.path("current"), pointingTo: "generations/1")
        #expect(try FileIO.readLink(directory.path("current")) == "generations/1")
        try FileIO.replaceSymlink(directory.path("current"), pointingTo: "generations/2")
        #expect(try FileIO.readLink(directory.path("current")) == "generations/2")
        #expect(try FileIO.listDirectory(directory.path) == ["current"])
    }

    @Test func publishByRenameMovesTheFileOrRemovesTheTemporary() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.writeFile("metrics.prom.tmp", text: "new")
        try FileIO.publishByRename(directory.path("metrics.prom.tmp"), to: directory.path("metrics.prom"))
        #expect(try FileIO.listDirectory(directory.path) == ["metrics.prom"])
        #expect(try FileIO.readNoFollow(directory.path("metrics.prom")) == Array("new".utf8))

        try directory.writeFile("download.tmp", text: "partial")
        #expect(throws: FileSystemError.self) {
            try FileIO.publishByRename(
                directory.path("download.tmp"), to: directory.path("missing/nar"), durable: false)
        }
        #expect(try FileIO.listDirectory(directory.path) == ["metrics.prom"], "the temporary is gone")
    }

    @Test func absoluteResolvesByTheTextAgainstTheCurrentDirectory() {
        let here = FileIO.currentDirectory()
        let expected = [
            "/srv/fleet": "/srv/fleet", "/srv//fleet/": "/srv/fleet", "/srv/./fleet/../fleet": "/srv/fleet",
            "relative/dir": here + "/relative/dir", "./a/../b": here + "/b", "/": "/", ".": here,
            "~/fleet": here + "/~/fleet", "/a/../../b": "/b",
        ]
        for (path, absolute) in expected {
            #expect(FileIO.absolute(path) == absolute, "\(path)")
        }
    }

    @Test func anUnlinkedFileHoldsItsBytesFromTheStartAndLeavesNoName() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let descriptor = try FileIO.unlinkedFile(
            containing: Array("input for a child".utf8), in: directory.path, prefix: ".fleet-input-")
        defer { try? descriptor.close() }
        #expect(try FileIO.listDirectory(directory.path).isEmpty)
        #expect(try FileIO.readAll(descriptor, path: "input", limit: 64) == Array("input for a child".utf8))
    }

    @Test func aNewDirectoryIsRefusedWhereAnyNameIsAndExecutableIsAsked() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try FileIO.createNewDirectory(directory.path("incoming"), mode: 0o700)
        #expect(try FileStatus.of(directory.path("incoming"))?.permissions == 0o700)
        #expect(throws: FileSystemError("mkdir", path: directory.path("incoming"), errno: EEXIST)) {
            try FileIO.createNewDirectory(directory.path("incoming"), mode: 0o700)
        }
        #expect(symlink(directory.path("nowhere"), directory.path("dangling")) == 0)
        #expect(throws: FileSystemError.self) { try FileIO.createNewDirectory(directory.path("dangling"), mode: 0o700) }
        try FileIO.removeEmptyDirectory(directory.path("incoming"))
        #expect(try FileStatus.of(directory.path("incoming")) == nil)

        #expect(FileIO.isExecutable("/bin/sh"))
        try directory.writeFile("script", text: "#!/bin/sh\n", mode: 0o644)
        #expect(!FileIO.isExecutable(directory.path("script")), "no execute bit: not even root may run it")
        #expect(Accounts.currentUserID == getuid() && Accounts.effectiveUserID == geteuid())
    }

    @Test func removeFileSaysWhetherSomethingWasThere() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.writeFile("file", text: "x")
        #expect(try FileIO.removeFile(directory.path("file")))
        #expect(try !FileIO.removeFile(directory.path("file")))
        try directory.makeDirectory("dir", mode: 0o700)
        #expect(throws: FileSystemError.self) { try FileIO.removeFile(directory.path("dir")) }
        #expect(try FileIO.isExistingDirectory(directory.path("dir")))
        #expect(try !FileIO.isExistingDirectory(directory.path("file")))
        try directory.writeFile("file", text: "x")
        #expect(throws: FileSystemError.self) { try FileIO.isExistingDirectory(directory.path("file")) }
    }
}
