@_spi(Testing) import ArchiveKit
import FleetTestSupport
import Foundation
import Glibc
import Testing

/// One way a snapshot can be hostile: the entry to add after a harmless prefix, and the refusal expected.
struct HostileEntry: Sendable, CustomTestStringConvertible {
    /// The name to store; "$ROOT" stands for the test's temporary directory.
    let path: String
    let kind: SnapshotWriter.RawEntryKind
    /// The name as libarchive reads it back (directories gain a "/"), when it differs from `path`.
    let storedPath: String?
    let reason: String

    init(
        _ path: String, _ kind: SnapshotWriter.RawEntryKind = .regularFile, stored: String? = nil,
        refusal reason: String
    ) {
        self.path = path
        self.kind = kind
        self.storedPath = stored
        self.reason = reason
    }

    var testDescription: String { "\(path) (\(kind))" }

    static let dotDot = "its path has a \"..\" component"
    static let dot = "its path has a \".\" component"
    static let noParent = "its parent is not a directory extracted before it"
    static let noLinks = "; snapshots hold no links"
    static let onlyPlain = "; snapshots hold only directories and regular files"

    static let all: [HostileEntry] = [
        HostileEntry("../escape", refusal: dotDot),
        HostileEntry("etc/../../escape", refusal: dotDot),
        HostileEntry("../escape", .directory, stored: "../escape/", refusal: dotDot),
        // "/" then a combining mark: one Swift Character, but the kernel sees ".." and a name.
        HostileEntry("../\u{301}escape", refusal: dotDot),
        HostileEntry("$ROOT/sibling/absolute", refusal: "its path is absolute"),
        HostileEntry(
            "$ROOT/sibling/absolute", .directory, stored: "$ROOT/sibling/absolute/", refusal: "its path is absolute"),
        HostileEntry(".", .directory, stored: "./", refusal: dot),
        HostileEntry("./etc/again", refusal: dot),
        HostileEntry("etc//double", refusal: "its path has an empty component"),
        HostileEntry(
            "link", .symbolicLink(target: "../sibling"), refusal: "it is a symbolic link to \"../sibling\"" + noLinks),
        HostileEntry("etc/link", .symbolicLink(target: "/etc"), refusal: "it is a symbolic link to \"/etc\"" + noLinks),
        HostileEntry("hard", .hardLink(target: "etc/ok"), refusal: "it is a hard link to \"etc/ok\"" + noLinks),
        HostileEntry(
            "hard", .hardLink(target: "/etc/passwd"), refusal: "it is a hard link to \"/etc/passwd\"" + noLinks),
        HostileEntry("null", .characterDevice(major: 1, minor: 3), refusal: "it is a character device 1,3" + onlyPlain),
        HostileEntry("disk", .blockDevice(major: 8, minor: 0), refusal: "it is a block device 8,0" + onlyPlain),
        HostileEntry("pipe", .fifo, refusal: "it is a FIFO" + onlyPlain),
        HostileEntry("etc/ok", refusal: "it appears more than once in the archive"),
        HostileEntry("etc", .directory, stored: "etc/", refusal: "it appears more than once in the archive"),
        HostileEntry("etc/ok/inside", refusal: noParent),
        HostileEntry("missing/file", refusal: noParent),
        HostileEntry("missing/dir", .directory, stored: "missing/dir/", refusal: noParent),
    ]
}

@Suite("SafeExtractor")
struct SafeExtractorTests {
    static let roomy = ExtractionLimits(maxBytes: 1 << 30, maxEntries: 10_000, maxFileBytes: 1 << 30)

    @Test("the writer's sample tree comes back with its contents, names and modes")
    func extractsSample() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let big = noise(count: 150_000)
        try writeBytes(big, to: directory.path("source.bin"))
        try SnapshotWriterTests.writeSample(to: directory.path("a.tar.zst"), source: directory.path("source.bin"))

        let summary = try SafeExtractor().extract(
            archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: Self.roomy)

        #expect(summary == ExtractionSummary(files: 8, directories: 5, bytes: 150_000 + 13 + 22 + 10 + 3 + 12 + 7))
        #expect(mode(of: directory.path("out")) == 0o700)
        let long = "hosts/web/" + String(repeating: "n", count: 150)
        #expect(
            try tree(directory.path("out")) == [
                .directory("common", 0o755),
                .file("common/base.nix", 0o644, "{ ... }: { }\n"),
                .directory("hosts", 0o755),
                .directory("hosts/web", 0o755),
                Node(path: "hosts/web/big.bin", kind: .file(big), mode: 0o644),
                .directory("hosts/web/café", 0o755),
                .file("hosts/web/café/naïve.txt", 0o600, "ünïcödé\n"),
                .file("hosts/web/empty", 0o644, ""),
                .file("hosts/web/flake.nix", 0o644, "{ outputs = _: { }; }\n"),
                .file("hosts/web/hook.sh", 0o755, "#!/bin/sh\n"),
                Node(path: long, kind: .file([1, 2, 3]), mode: 0o644),
                .directory("secrets", 0o700),
                .file("secrets/token", 0o400, "s3cret\n"),
            ])
    }

    @Test("modes lose setuid, setgid, sticky and group or other write; exec bits stay; directories stay fillable")
    func masksModes() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addRawEntry(path: "bin", kind: .directory, permissions: 0o6775)
        try writer.addRawEntry(path: "bin/setuid", kind: .regularFile, permissions: 0o4755, bytes: [1])
        try writer.addRawEntry(path: "bin/shared", kind: .regularFile, permissions: 0o2777, bytes: [2])
        try writer.addRawEntry(path: "bin/writable", kind: .regularFile, permissions: 0o666, bytes: [3])
        try writer.addRawEntry(path: "locked", kind: .directory, permissions: 0o500)
        try writer.addRawEntry(path: "locked/key", kind: .regularFile, permissions: 0o400, bytes: [4])
        try writer.addRawEntry(path: "tmp", kind: .directory, permissions: 0o1777)
        try writer.finish()

        let summary = try SafeExtractor().extract(
            archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: Self.roomy)

        #expect(summary == ExtractionSummary(files: 4, directories: 3, bytes: 4))
        #expect(
            try tree(directory.path("out")) == [
                .directory("bin", 0o755),
                Node(path: "bin/setuid", kind: .file([1]), mode: 0o755),
                Node(path: "bin/shared", kind: .file([2]), mode: 0o755),
                Node(path: "bin/writable", kind: .file([3]), mode: 0o644),
                .directory("locked", 0o700),
                Node(path: "locked/key", kind: .file([4]), mode: 0o400),
                .directory("tmp", 0o755),
            ])
    }

    @Test("names are bytes: \"café\" in NFC and in NFD are two files")
    func canonicallyEquivalentNames() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let composed = "caf\u{E9}"
        let decomposed = "cafe\u{301}"
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addFile(composed, permissions: 0o644, bytes: [1])
        try writer.addFile(decomposed, permissions: 0o644, bytes: [2])
        try writer.finish()

        let summary = try SafeExtractor().extract(
            archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: Self.roomy)

        #expect(summary.files == 2)
        #expect(try readBytes(directory.path("out/\(composed)")) == [1])
        #expect(try readBytes(directory.path("out/\(decomposed)")) == [2])
    }

    @Test("hostile entries are refused by name and nothing lands outside the destination", arguments: HostileEntry.all)
    func refusesHostileEntry(_ hostile: HostileEntry) throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        #expect(mkdir(directory.path("sibling"), 0o755) == 0)
        let path = hostile.path.replacingOccurrences(of: "$ROOT", with: directory.path)
        let stored = (hostile.storedPath ?? hostile.path).replacingOccurrences(of: "$ROOT", with: directory.path)
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addDirectory("etc", permissions: 0o755)
        try writer.addFile("etc/ok", permissions: 0o644, bytes: Array("fine\n".utf8))
        try writer.addRawEntry(path: path, kind: hostile.kind, permissions: 0o644, bytes: Array("evil\n".utf8))
        // Entries a successful escape would use next: through a link, or into a planted directory.
        try writer.addRawEntry(path: "link/owned", kind: .regularFile, permissions: 0o644, bytes: [6])
        try writer.addRawEntry(path: "../escape/owned", kind: .regularFile, permissions: 0o644, bytes: [6])
        try writer.finish()

        let error = #expect(throws: ArchiveError.self) {
            try SafeExtractor().extract(
                archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: Self.roomy)
        }
        #expect(error?.code == .refusedEntry)
        #expect(error?.entry == stored)
        #expect(error?.reason == hostile.reason)
        let archive = directory.path("a.tar.zst")
        let quoted = String(reflecting: stored)
        #expect(error?.description == "Refused entry \(quoted) of archive \(archive): \(hostile.reason).")

        // Only the harmless prefix was written, and nothing beside the destination changed.
        #expect(try tree(directory.path("out")) == [.directory("etc", 0o755), .file("etc/ok", 0o644, "fine\n")])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path("sibling")) == [])
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == [
                "a.tar.zst", "out", "sibling",
            ])
    }

    @Test("more entries than allowed are refused at the first one past the limit")
    func entryLimit() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addDirectory("etc", permissions: 0o755)
        try writer.addFile("etc/a", permissions: 0o644, bytes: [1])
        try writer.addFile("etc/b", permissions: 0o644, bytes: [2])
        try writer.finish()

        let limits = ExtractionLimits(maxBytes: 1000, maxEntries: 2, maxFileBytes: 1000)
        let error = #expect(throws: ArchiveError.self) {
            try SafeExtractor().extract(
                archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: limits)
        }
        #expect(error?.code == .limitExceeded)
        #expect(error?.entry == "etc/b")
        #expect(error?.reason == "the archive holds more than 2 entries")
        #expect(try tree(directory.path("out")).count == 2)
    }

    @Test("a file larger than the per-file limit is refused before it is written")
    func fileLimit() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addFile("small", permissions: 0o644, bytes: noise(count: 1000))
        try writer.addFile("large", permissions: 0o644, bytes: noise(count: 1001))
        try writer.finish()

        let limits = ExtractionLimits(maxBytes: 1 << 20, maxEntries: 10, maxFileBytes: 1000)
        let error = #expect(throws: ArchiveError.self) {
            try SafeExtractor().extract(
                archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: limits)
        }
        #expect(error?.code == .limitExceeded)
        #expect(error?.entry == "large")
        #expect(error?.reason == "its 1001 bytes exceed the limit of 1000")
        #expect(try tree(directory.path("out")).map(\.path) == ["small"])
    }

    @Test("files that together pass the total limit are refused at the one that crosses it")
    func totalLimit() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addFile("first", permissions: 0o644, bytes: noise(count: 600))
        try writer.addFile("second", permissions: 0o644, bytes: noise(count: 600))
        try writer.finish()

        let limits = ExtractionLimits(maxBytes: 1000, maxEntries: 10, maxFileBytes: 1000)
        let error = #expect(throws: ArchiveError.self) {
            try SafeExtractor().extract(
                archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: limits)
        }
        #expect(error?.code == .limitExceeded)
        #expect(error?.entry == "second")
        #expect(error?.reason == "it would take the archive past the limit of 1000 bytes")
    }

    @Test("a small archive that expands hugely is stopped at the limit")
    func compressionBomb() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addFile("zeros", permissions: 0o644, bytes: [UInt8](repeating: 0, count: 32 << 20))
        try writer.finish()
        #expect(try readBytes(directory.path("a.tar.zst")).count < 64 << 10)

        let limits = ExtractionLimits(maxBytes: 1 << 20, maxEntries: 10, maxFileBytes: 1 << 30)
        let error = #expect(throws: ArchiveError.self) {
            try SafeExtractor().extract(
                archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: limits)
        }
        #expect(error?.code == .limitExceeded)
        #expect(error?.entry == "zeros")
        #expect(try tree(directory.path("out")) == [])
    }

    @Test("an existing destination is refused and left alone")
    func existingDestination() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try SnapshotWriter(path: directory.path("a.tar.zst")).finish()
        #expect(mkdir(directory.path("out"), 0o755) == 0)
        try writeBytes([7], to: directory.path("out/mine"))

        let error = #expect(throws: ArchiveError.self) {
            try SafeExtractor().extract(
                archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: Self.roomy)
        }
        #expect(error?.code == .system)
        #expect(error?.systemError == EEXIST)
        #expect(try tree(directory.path("out")) == [Node(path: "mine", kind: .file([7]), mode: 0o644)])
    }

    @Test("something that is not a tar archive is refused before the destination is made")
    func notATar() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try writeBytes(Array("#!/bin/sh\nrm -rf /\n".utf8), to: directory.path("a.tar.zst"))

        let error = #expect(throws: ArchiveError.self) {
            try SafeExtractor().extract(
                archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: Self.roomy)
        }
        #expect(error?.code == .library)
        #expect(mode(of: directory.path("out")) == nil)
    }

    @Test("a truncated archive fails, naming the entry it cut", arguments: [2, 4])
    func truncated(fraction: Int) throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let writer = try SnapshotWriter(path: directory.path("a.tar.zst"))
        try writer.addDirectory("etc", permissions: 0o755)
        // Large enough that the cut falls inside the file's data, past what libarchive reads ahead when it opens.
        try writer.addFile("etc/data", permissions: 0o644, bytes: noise(count: 2_000_000))
        try writer.finish()
        let whole = try readBytes(directory.path("a.tar.zst"))
        try writeBytes(Array(whole.prefix(whole.count - whole.count / fraction)), to: directory.path("cut.tar.zst"))

        let error = #expect(throws: ArchiveError.self) {
            try SafeExtractor().extract(
                archivePath: directory.path("cut.tar.zst"), into: directory.path("out"), limits: Self.roomy)
        }
        #expect(error?.code == .library)
        #expect(error?.entry == "etc/data")
        #expect(error?.reason.hasPrefix("libarchive could not read its data: ") == true)
    }

    @Test("an empty file is not an empty snapshot")
    func emptyFile() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try writeBytes([], to: directory.path("a.tar.zst"))

        let error = #expect(throws: ArchiveError.self) {
            try SafeExtractor().extract(
                archivePath: directory.path("a.tar.zst"), into: directory.path("out"), limits: Self.roomy)
        }
        #expect(error?.code == .library)
        #expect(mode(of: directory.path("out")) == nil)
    }
}
