import FleetTestSupport
import Foundation
import Glibc
@_spi(Testing) import SFTPTransport
import Testing

/// Parts of files in the batch calls, against a real sshd: tails downloaded from an offset, heads read into
/// memory; the limit and expected size stay about the whole file, and a head costs only its bytes.
@Suite(.serialized, .needsRootAndSSHD)
struct BatchRangeTests {
    /// Tails from every kind of offset (none, one byte in, inside a short reply, the last byte, the very end),
    /// each exactly the remote bytes from its offset, in one batch with short replies followed up.
    @Test func downloadsTailsFromTheirOffsets() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let content = randomBytes(700_003)
        try server.publish("nar", content)
        try server.publish("small", randomBytes(10))
        // Asking for more than OpenSSH's 255 KiB makes the replies short: the retries are at remote offsets.
        let connection = try await SFTPConnection.connect(to: server.endpoint(), readRequestSize: 300 << 10)
        try server.scratch.makeDirectory("out")
        let offsets: [Int64] = [0, 1, 200_000, 261_121, 699_999, 700_003]
        let items = offsets.map {
            SFTPConnection.Download(
                remotePath: "/data/nar", localPath: server.scratch.path("out/\($0)"), limit: 1 << 20,
                expectedSize: Int64(content.count), offset: $0)
        }
        let bytes = try await connection.downloadFiles(items)
        #expect(bytes == offsets.reduce(0) { $0 + Int64(content.count) - $1 })
        for offset in offsets {
            #expect(try server.scratch.readFile("out/\(offset)") == Array(content[Int(offset)...]), "offset \(offset)")
        }
        var status = stat()
        #expect(stat(server.scratch.path("out/700003"), &status) == 0 && status.st_size == 0, "an empty tail")

        // A tail of a small file alone, and the session still in step.
        #expect(
            try await connection.downloadFiles([
                .init(remotePath: "/data/small", localPath: server.scratch.path("small"), limit: 10, offset: 10)
            ]) == 0)
        #expect(try server.scratch.readFile("small").isEmpty)
        #expect(try await connection.readFile("/data/nar", limit: 1 << 20) == content)
        await connection.close()
    }

    /// An offset past the end is refused, and so is a file of another size or over the limit however little of
    /// it is wanted; the batch leaves no local file and the session goes on.
    @Test func refusesOffsetsPastTheEndAndChecksTheWholeFile() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        for index in 0..<10 { try server.publish("f\(index)", randomBytes(1000 + index)) }
        try server.publish("big", randomBytes(5000))
        let connection = try await server.connect()
        try server.scratch.makeDirectory("out")
        let good = (0..<10).map {
            SFTPConnection.Download(
                remotePath: "/data/f\($0)", localPath: server.scratch.path("out/f\($0)"), limit: 4096, offset: 500)
        }
        let cases: [(bad: SFTPConnection.Download, code: SSHError.Code, says: String)] = [
            (
                .init(remotePath: "/data/f3", localPath: server.scratch.path("out/x"), limit: 4096, offset: 1004),
                .sftpFailure, "it is 1003 bytes, shorter than the offset 1004"
            ),
            (
                .init(
                    remotePath: "/data/f3", localPath: server.scratch.path("out/x"), limit: 4096, expectedSize: 3,
                    offset: 1000),
                .limitExceeded, "it is 1003 bytes, but 3 were expected"
            ),
            (
                .init(remotePath: "/data/big", localPath: server.scratch.path("out/x"), limit: 4096, offset: 4000),
                .limitExceeded, "it is 5000 bytes, over the limit of 4096"
            ),
        ]
        for (bad, code, says) in cases {
            let error = await #expect(throws: SSHError.self) {
                try await connection.downloadFiles(Array(good[..<5]) + [bad] + Array(good[5...]))
            }
            #expect(error?.code == code, "\(String(describing: error))")
            #expect(error?.path == bad.remotePath, "\(String(describing: error))")
            #expect(error?.description.contains(says) == true, "\(String(describing: error))")
            #expect(try FileManager.default.contentsOfDirectory(atPath: server.scratch.path("out")).isEmpty)
            #expect(try await connection.readFile("/data/f3", limit: 4096).count == 1003, "still in step")
        }
        // The expected size with an offset is the whole file's.
        #expect(
            try await connection.downloadFiles([
                .init(
                    remotePath: "/data/f3", localPath: server.scratch.path("out/x"), limit: 4096, expectedSize: 1003,
                    offset: 1000)
            ]) == 3)
        await connection.close()
    }

    /// A head is the file's first bytes (all of a shorter file) with the whole size, and costs the server only
    /// those bytes: the sftp server's own reads (`rchar` of sshd's processes) grow by far less than the file.
    @Test func readsHeadsWithoutReadingTheRest() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let large = randomBytes(5 << 20)
        let short = randomBytes(1000)
        try server.publish("large.nar", large)
        try server.publish("short.nar", short)
        try server.publish("empty.nar", [])
        let connection = try await server.connect()

        var before = bytesReadBySSHD(server)
        let heads = try await connection.readFileHeads(
            ["/data/large.nar", "/data/short.nar", "/data/empty.nar", "/data/large.nar"], length: 2048,
            limit: 8 << 20)
        let headCost = bytesReadBySSHD(server) - before
        #expect(
            heads == [
                "/data/large.nar": .init(bytes: Array(large[..<2048]), size: 5 << 20),
                "/data/short.nar": .init(bytes: short, size: 1000),
                "/data/empty.nar": .init(bytes: [], size: 0),
            ])
        // The measure itself: reading the whole file shows up in it.
        before = bytesReadBySSHD(server)
        #expect(try await connection.readFiles(["/data/large.nar"], limit: 8 << 20) == ["/data/large.nar": large])
        let wholeCost = bytesReadBySSHD(server) - before
        #expect(wholeCost >= 5 << 20, "the server's reads are counted")
        // One read request past the head (up to 255 KiB, counted as the file's read and the pipe's) would show.
        #expect(headCost < 64 << 10, "the head cost \(headCost) bytes of reads, the whole file \(wholeCost)")

        // A head longer than a (short) read reply, and one of length 0.
        let shortReplies = try await SFTPConnection.connect(to: server.endpoint(), readRequestSize: 300 << 10)
        let longHead = try await shortReplies.readFileHeads(["/data/large.nar"], length: 400_000, limit: 8 << 20)
        #expect(longHead == ["/data/large.nar": .init(bytes: Array(large[..<400_000]), size: 5 << 20)])
        await shortReplies.close()
        #expect(
            try await connection.readFileHeads(["/data/large.nar"], length: 0, limit: 8 << 20) == [
                "/data/large.nar": .init(bytes: [], size: 5 << 20)
            ])
        #expect(try await connection.readFileHeads([], length: 2048, limit: 1).isEmpty)
        await connection.close()
    }

    /// The limit is about the whole file, not the head; failures are those of `readFiles`, and leave the
    /// session usable.
    @Test func refusesHeadsOfFilesOverTheLimit() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        try server.publish("large.nar", randomBytes(5000))
        try server.publish("short.nar", randomBytes(10))
        let connection = try await server.connect()

        let cases: [(paths: [String], code: SSHError.Code, path: String, says: String)] = [
            (["/data/short.nar", "/data/large.nar"], .limitExceeded, "/data/large.nar", "over the limit of 4096"),
            (["/data/short.nar", "/data/absent"], .noSuchFile, "/data/absent", "/data/absent"),
            (["/data", "/data/short.nar"], .sftpFailure, "/data", "not a regular file"),
        ]
        for (paths, code, path, says) in cases {
            let error = await #expect(throws: SSHError.self) {
                try await connection.readFileHeads(paths, length: 2048, limit: 4096)
            }
            #expect(error?.code == code && error?.path == path, "\(String(describing: error))")
            #expect(error?.description.contains(says) == true, "\(String(describing: error))")
            #expect(try await connection.readFile("/data/short.nar", limit: 10).count == 10, "still in step")
        }
        await connection.close()
    }

    /// A hundred files of every size at once, as heads and as tails.
    @Test func readsHeadsAndTailsOfManyFilesAtOnce() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        var contents: [String: [UInt8]] = [:]
        for index in 0..<100 {
            let size = index % 10 == 0 ? 300_000 + index : index * 41
            contents["/data/f\(index)"] = randomBytes(size)
            try server.publish("f\(index)", contents["/data/f\(index)"]!)
        }
        let connection = try await server.connect()

        let heads = try await connection.readFileHeads(Array(contents.keys), length: 2048, limit: 1 << 20)
        #expect(
            heads
                == contents.mapValues { SFTPConnection.FileHead(bytes: Array($0.prefix(2048)), size: Int64($0.count)) }
        )

        try server.scratch.makeDirectory("out")
        let items = contents.keys.sorted().map {
            SFTPConnection.Download(
                remotePath: $0, localPath: server.scratch.path("out/" + $0.dropFirst(6)), limit: 1 << 20,
                expectedSize: Int64(contents[$0]!.count), offset: Int64(contents[$0]!.count / 3))
        }
        let bytes = try await connection.downloadFiles(items)
        #expect(bytes == items.reduce(0) { $0 + $1.expectedSize! - $1.offset })
        for item in items {
            #expect(
                try server.scratch.readFile("out/" + item.remotePath.dropFirst(6))
                    == Array(contents[item.remotePath]![Int(item.offset)...]))
        }
        await connection.close()
    }

    /// What sshd's processes (the sftp server among them) have read so far, by `/proc/<pid>/io`'s `rchar`.
    private func bytesReadBySSHD(_ server: ChrootedSFTPServer) -> Int64 {
        (server.sshd.sessionProcessIDs() + [server.sshd.pid]).reduce(0) { total, pid in
            let io = (try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8)) ?? ""
            let line = io.split(separator: "\n").first { $0.hasPrefix("rchar:") }
            return total + (line.flatMap { Int64($0.dropFirst(6).trimmingCharacters(in: .whitespaces)) } ?? 0)
        }
    }
}
