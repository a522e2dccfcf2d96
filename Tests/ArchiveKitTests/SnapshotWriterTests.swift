@_spi(Testing) import ArchiveKit
import FleetTestSupport
import Foundation
import Glibc
import Testing

@Suite("SnapshotWriter")
struct SnapshotWriterTests {
    /// A tree with what snapshots hold: nested directories, an executable, a secret, an empty file, a file larger
    /// than one chunk read from disk, a name longer than ustar's 100 bytes, and non-ASCII names.
    static func writeSample(to path: String, source: String) throws(ArchiveError) {
        let writer = try SnapshotWriter(path: path)
        try writer.addDirectory("common", permissions: 0o755)
        try writer.addFile("common/base.nix", permissions: 0o644, bytes: Array("{ ... }: { }\n".utf8))
        try writer.addDirectory("hosts", permissions: 0o755)
        try writer.addDirectory("hosts/web", permissions: 0o755)
        try writer.addFile("hosts/web/big.bin", permissions: 0o644, contentsOf: source)
        try writer.addFile("hosts/web/empty", permissions: 0o644, bytes: [])
        try writer.addFile("hosts/web/flake.nix", permissions: 0o644, bytes: Array("{ outputs = _: { }; }\n".utf8))
        try writer.addFile("hosts/web/hook.sh", permissions: 0o755, bytes: Array("#!/bin/sh\n".utf8))
        try writer.addFile("hosts/web/" + String(repeating: "n", count: 150), permissions: 0o644, bytes: [1, 2, 3])
        try writer.addDirectory("hosts/web/café", permissions: 0o755)
        try writer.addFile("hosts/web/café/naïve.txt", permissions: 0o600, bytes: Array("ünïcödé\n".utf8))
        try writer.addDirectory("secrets", permissions: 0o700)
        try writer.addFile("secrets/token", permissions: 0o400, bytes: Array("s3cret\n".utf8))
        try writer.finish()
    }

    @Test("the same calls give byte-identical archives, even a second later")
    func deterministic() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try writeBytes(noise(count: 300_000), to: directory.path("source.bin"))

        try Self.writeSample(to: directory.path("first.tar.zst"), source: directory.path("source.bin"))
        // Past a second boundary, so that a clock leaking into any header (mtime, pax times) would show.
        Thread.sleep(forTimeInterval: 1.1)
        try Self.writeSample(to: directory.path("second.tar.zst"), source: directory.path("source.bin"))

        let first = try readBytes(directory.path("first.tar.zst"))
        #expect(first.count > 0)
        #expect(first == (try readBytes(directory.path("second.tar.zst"))))
    }

    @Test("a file from bytes and the same file from disk give identical archives")
    func bytesAndSourceAgree() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let contents = noise(count: 200_000, seed: 7)  // Several 64 KiB chunks and a partial one.
        try writeBytes(contents, to: directory.path("source.bin"))

        let fromBytes = try SnapshotWriter(path: directory.path("bytes.tar.zst"))
        try fromBytes.addFile("data", permissions: 0o644, bytes: contents)
        try fromBytes.finish()
        let fromSource = try SnapshotWriter(path: directory.path("source.tar.zst"))
        try fromSource.addFile("data", permissions: 0o644, contentsOf: directory.path("source.bin"))
        try fromSource.finish()

        #expect(try readBytes(directory.path("bytes.tar.zst")) == (try readBytes(directory.path("source.tar.zst"))))
    }

    @Test(
        "headers hold owner 0, group 0, mtime 0, no names or times, and the file is a clean zstd stream",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/zstd")))
    func fixedHeaders() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try writeBytes(noise(count: 70_000), to: directory.path("source.bin"))
        try Self.writeSample(to: directory.path("sample.tar.zst"), source: directory.path("source.bin"))

        let tar = try decompress(directory.path("sample.tar.zst"))
        var offset = 0
        var headers = 0
        var extendedHeaders = 0
        while offset + 512 <= tar.count, tar[offset..<offset + 512].contains(where: { $0 != 0 }) {
            let block = Array(tar[offset..<offset + 512])
            #expect(Array(block[257..<263]) == Array("ustar\0".utf8))
            #expect(octal(block[108..<116]) == 0, "uid")
            #expect(octal(block[116..<124]) == 0, "gid")
            #expect(octal(block[136..<148]) == 0, "mtime")
            #expect(block[265..<297].allSatisfy { $0 == 0 }, "uname")
            #expect(block[297..<329].allSatisfy { $0 == 0 }, "gname")
            let size = octal(block[124..<136])
            let dataStart = offset + 512
            if block[156] == UInt8(ascii: "x") {
                // A pax extended header may only carry a long or non-ASCII path, nothing time- or owner-like.
                let text = String(decoding: tar[dataStart..<dataStart + size], as: UTF8.self)
                let records = text.split(separator: "\n").map { $0.split(separator: " ", maxSplits: 1)[1] }
                let keys = records.map { $0.split(separator: "=")[0] }
                #expect(keys.allSatisfy { $0 == "path" || $0 == "hdrcharset" }, "pax keys \(keys)")
                #expect(records.allSatisfy { !$0.hasPrefix("hdrcharset=") || $0 == "hdrcharset=BINARY" })
                extendedHeaders += 1
            } else {
                #expect(block[156] == UInt8(ascii: "0") || block[156] == UInt8(ascii: "5"), "only files and dirs")
                headers += 1
            }
            offset = dataStart + (size + 511) / 512 * 512
        }
        #expect(headers == 13)
        #expect(extendedHeaders == 3)  // The long name, and the two names with "é".
        #expect(try run("/usr/bin/zstd", ["-q", "-t", directory.path("sample.tar.zst")]).status == 0)
    }

    @Test("entries read back with their kinds, modes, sizes and contents")
    func roundTrip() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let big = noise(count: 150_000)
        try writeBytes(big, to: directory.path("source.bin"))
        try Self.writeSample(to: directory.path("sample.tar.zst"), source: directory.path("source.bin"))

        let reader = try ArchiveReader(path: directory.path("sample.tar.zst"))
        var seen: [(String, ArchiveEntryKind, UInt32, Int64, [UInt8])] = []
        while let header = try reader.nextEntry() {
            seen.append(
                (header.path, header.kind, header.permissions, header.size, try reader.readData(limit: 1 << 20)))
            #expect(header.warning == nil)
        }
        let long = "hosts/web/" + String(repeating: "n", count: 150)
        let expected: [(String, ArchiveEntryKind, UInt32, Int64, [UInt8])] = [
            ("common/", .directory, 0o755, 0, []),
            ("common/base.nix", .regularFile, 0o644, 13, Array("{ ... }: { }\n".utf8)),
            ("hosts/", .directory, 0o755, 0, []),
            ("hosts/web/", .directory, 0o755, 0, []),
            ("hosts/web/big.bin", .regularFile, 0o644, 150_000, big),
            ("hosts/web/empty", .regularFile, 0o644, 0, []),
            ("hosts/web/flake.nix", .regularFile, 0o644, 22, Array("{ outputs = _: { }; }\n".utf8)),
            ("hosts/web/hook.sh", .regularFile, 0o755, 10, Array("#!/bin/sh\n".utf8)),
            (long, .regularFile, 0o644, 3, [1, 2, 3]),
            ("hosts/web/café/", .directory, 0o755, 0, []),
            ("hosts/web/café/naïve.txt", .regularFile, 0o600, 12, Array("ünïcödé\n".utf8)),
            ("secrets/", .directory, 0o700, 0, []),
            ("secrets/token", .regularFile, 0o400, 7, Array("s3cret\n".utf8)),
        ]
        #expect(seen.map(\.0) == expected.map(\.0))
        for (actual, wanted) in zip(seen, expected) {
            #expect(actual.1 == wanted.1, "\(wanted.0)")
            #expect(actual.2 == wanted.2, "\(wanted.0)")
            #expect(actual.3 == wanted.3, "\(wanted.0)")
            #expect(actual.4 == wanted.4, "\(wanted.0)")
        }
    }

    @Test(
        "unsafe names are refused before anything is written",
        arguments: [
            ("../x", "its path has a \"..\" component"),
            ("dir/../x", "its path has a \"..\" component"),
            ("/etc/x", "its path is absolute"),
            ("", "its path is empty"),
            (".", "its path has a \".\" component"),
            ("./x", "its path has a \".\" component"),
            ("dir//x", "its path has an empty component"),
            ("dir/x/", "only a directory's path may end with \"/\""),
            ("dir/\u{0}x", "its path contains a NUL byte"),
            // "/" then a combining mark is one Character but two things to the kernel: a slash and a name.
            ("../\u{301}x", "its path has a \"..\" component"),
            ("missing/x", "its parent directory was not added before it"),
            ("dir", "it was already added"),
        ])
    func refusesUnsafeNames(path: String, reason: String) throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addDirectory("dir", permissions: 0o755)

        let error = #expect(throws: ArchiveError.self) {
            try writer.addFile(path, permissions: 0o644, bytes: [1])
        }
        #expect(error?.code == .refusedEntry)
        #expect(error?.entry == path)
        #expect(error?.reason == reason)
        #expect(error?.description.contains(directory.path("a.tar.zst")) == true)

        // A refusal leaves the writer usable and the archive without the entry.
        try writer.addFile("dir/ok", permissions: 0o644, bytes: [2])
        try writer.finish()
        #expect(try entryPaths(directory.path("a.tar.zst")) == ["dir/", "dir/ok"])
    }

    @Test("a file cannot be the parent of another entry, and special bits are refused")
    func refusesFileParentsAndSpecialBits() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addFile("file", permissions: 0o644, bytes: [])

        let orphan = #expect(throws: ArchiveError.self) { try writer.addDirectory("file/sub", permissions: 0o755) }
        #expect(orphan?.reason == "its parent directory was not added before it")
        let setuid = #expect(throws: ArchiveError.self) {
            try writer.addFile("tool", permissions: 0o4755, bytes: [])
        }
        #expect(setuid?.code == .refusedEntry)
        #expect(setuid?.description.contains("0o4755") == true)
    }

    @Test("the archive file is created exclusively, with the requested mode")
    func exclusiveCreation() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try writeBytes([42], to: directory.path("taken.tar.zst"))

        let error = #expect(throws: ArchiveError.self) { try SnapshotWriter(path: directory.path("taken.tar.zst")) }
        #expect(error?.code == .system)
        #expect(error?.systemError == EEXIST)
        #expect(try readBytes(directory.path("taken.tar.zst")) == [42])

        let writer = try SnapshotWriter(path: directory.path("new.tar.zst"), permissions: 0o640)
        try writer.finish()
        #expect(mode(of: directory.path("new.tar.zst")) == 0o640)
        #expect(mode(of: directory.path("default.tar.zst")) == nil)
        try SnapshotWriter(path: directory.path("default.tar.zst")).finish()
        #expect(mode(of: directory.path("default.tar.zst")) == 0o600)
    }

    @Test("a source that is not a regular file is refused")
    func refusesIrregularSources() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        #expect(mkfifo(directory.path("fifo"), 0o600) == 0)
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))

        let fifo = #expect(throws: ArchiveError.self) {
            try writer.addFile("fifo", permissions: 0o644, contentsOf: directory.path("fifo"))
        }
        #expect(fifo?.code == .refusedEntry)
        #expect(fifo?.reason == "its source \(directory.path("fifo")) is not a regular file")
        let missing = #expect(throws: ArchiveError.self) {
            try writer.addFile("missing", permissions: 0o644, contentsOf: directory.path("missing"))
        }
        #expect(missing?.systemError == ENOENT)
        try writer.finish()  // Neither refusal broke the archive.
    }

    @Test("a source that grows while it is read fails the archive, which then takes nothing more")
    func sourceThatChangesSize() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))

        // Files in /proc report a size of 0 and then deliver data: exactly a file that grew after fstat.
        let grown = #expect(throws: ArchiveError.self) {
            try writer.addFile("status", permissions: 0o644, contentsOf: "/proc/self/status")
        }
        #expect(grown?.entry == "status")
        #expect(grown?.reason == "its source /proc/self/status grew past 0 bytes while it was read")

        let after = #expect(throws: ArchiveError.self) { try writer.addFile("next", permissions: 0o644, bytes: []) }
        #expect(after?.code == .misuse)
        let finish = #expect(throws: ArchiveError.self) { try writer.finish() }
        #expect(finish?.code == .misuse)
    }

    @Test("an unfinished writer does not leave a complete-looking archive behind")
    func unfinishedArchiveIsNotValid() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        do {
            let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
            try writer.addDirectory("dir", permissions: 0o755)
            try writer.addFile("dir/data", permissions: 0o644, bytes: noise(count: 1 << 20))
            try writer.addFile("dir/more", permissions: 0o644, bytes: [1])
            // Dropped here without finish().
        }
        #expect(try readBytes(directory.path("a.tar.zst")).count > 1 << 19)  // zstd had to flush most of it.
        let error = #expect(throws: ArchiveError.self) {
            try SafeExtractor().extract(
                archivePath: directory.path("a.tar.zst"), into: directory.path("out"),
                limits: ExtractionLimits(maxBytes: 1 << 30, maxEntries: 100, maxFileBytes: 1 << 30))
        }
        #expect(error?.code == .library)
    }

    @Test("finishing twice is a misuse")
    func finishTwice() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.finish()
        let error = #expect(throws: ArchiveError.self) { try writer.finish() }
        #expect(error?.code == .misuse)
        #expect(
            error?.description == "Failed on archive \(directory.path("a.tar.zst")): the archive is already finished.")
        #expect(try entryPaths(directory.path("a.tar.zst")) == [])
    }
}

/// Every stored path, in order.
func entryPaths(_ archive: String) throws(ArchiveError) -> [String] {
    let reader = try ArchiveReader(path: archive)
    var paths: [String] = []
    while let header = try reader.nextEntry() {
        _ = try reader.readData(limit: 1 << 30)
        paths.append(header.path)
    }
    return paths
}

private func octal(_ field: ArraySlice<UInt8>) -> Int {
    field.prefix { $0 != 0 && $0 != UInt8(ascii: " ") }.reduce(0) { $0 * 8 + Int($1 - UInt8(ascii: "0")) }
}

private func decompress(_ path: String) throws -> [UInt8] {
    let result = try run("/usr/bin/zstd", ["-q", "-d", "-c", path])
    #expect(result.status == 0)
    return result.output
}

private func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: [UInt8]) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, Array(output))
}
