import FleetTestSupport
import Foundation
import Glibc
@_spi(Testing) import SFTPTransport
import Testing

extension SFTPConnectionTests {
    /// Hundreds of files of every size at once (empty, tiny, several read requests, over a read request with
    /// short replies), read into memory and downloaded, each exactly.
    @Test func readsAndDownloadsManyFilesAtOnce() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        var contents: [String: [UInt8]] = [:]
        for index in 0..<300 {
            let size = index == 0 ? 0 : index % 50 == 0 ? 700_000 + index : index * 37
            contents["/data/f\(index)"] = randomBytes(size)
            try server.publish("f\(index)", contents["/data/f\(index)"]!)
        }
        // Asking for more than OpenSSH's 255 KiB makes the large files' replies short: followed up per file.
        let connection = try await SFTPConnection.connect(to: server.endpoint(), readRequestSize: 300 << 10)

        let read = try await connection.readFiles(Array(contents.keys) + ["/data/f1"], limit: 1 << 20)
        #expect(read == contents)

        try server.scratch.makeDirectory("out")
        let items = contents.keys.sorted().map {
            SFTPConnection.Download(
                remotePath: $0, localPath: server.scratch.path("out/" + $0.dropFirst(6)), limit: 1 << 20,
                expectedSize: Int64(contents[$0]!.count))
        }
        let bytes = try await connection.downloadFiles(items)
        #expect(bytes == contents.values.reduce(0) { $0 + Int64($1.count) })
        for item in items {
            #expect(try server.scratch.readFile("out/" + item.remotePath.dropFirst(6)) == contents[item.remotePath])
        }
        // The session is still in step afterwards.
        #expect(try await connection.readFile("/data/f3", limit: 1024) == contents["/data/f3"])
        await connection.close()
    }

    /// A batch with one bad file fails as a whole with that file's error, leaves no local file at all (not
    /// even the files that were complete), and the session stays usable.
    @Test func aBatchWithOneBadFileFailsWholeAndLeavesNoLocalFiles() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        for index in 0..<40 { try server.publish("f\(index)", randomBytes(1000 + index)) }
        try server.publish("big", randomBytes(5000))
        let connection = try await server.connect()
        try server.scratch.makeDirectory("out")
        let good = (0..<40).map {
            SFTPConnection.Download(
                remotePath: "/data/f\($0)", localPath: server.scratch.path("out/f\($0)"), limit: 4096)
        }
        let cases: [(bad: SFTPConnection.Download, code: SSHError.Code, says: String)] = [
            (
                .init(remotePath: "/data/absent", localPath: server.scratch.path("out/absent"), limit: 4096),
                .noSuchFile, "/data/absent"
            ),
            (
                .init(remotePath: "/data/big", localPath: server.scratch.path("out/big"), limit: 4096),
                .limitExceeded, "over the limit of 4096"
            ),
            (
                .init(remotePath: "/data/f7", localPath: server.scratch.path("out/f7b"), limit: 4096, expectedSize: 9),
                .limitExceeded, "but 9 were expected"
            ),
            (
                .init(remotePath: "/data", localPath: server.scratch.path("out/dir"), limit: 4096),
                .sftpFailure, "not a regular file"
            ),
        ]
        for (bad, code, says) in cases {
            let error = await #expect(throws: SSHError.self) {
                try await connection.downloadFiles(Array(good[..<30]) + [bad] + Array(good[30...]))
            }
            #expect(error?.code == code, "\(String(describing: error))")
            #expect(error?.description.contains(says) == true, "\(String(describing: error))")
            #expect(try FileManager.default.contentsOfDirectory(atPath: server.scratch.path("out")).isEmpty)
            #expect(try await connection.readFile("/data/f3", limit: 4096).count == 1003, "still in step")
        }
        let error = await #expect(throws: SSHError.self) {
            try await connection.readFiles(["/data/f1", "/data/absent", "/data/f2"], limit: 4096)
        }
        #expect(error?.code == .noSuchFile && error?.path == "/data/absent")

        // A local file that exists already is never overwritten, and the batch's own files go again.
        try server.scratch.writeFile("out/f5", text: "mine")
        let existing = await #expect(throws: SSHError.self) { try await connection.downloadFiles(good) }
        #expect(existing?.code == .localIO && existing?.localErrno == EEXIST)
        #expect(try FileManager.default.contentsOfDirectory(atPath: server.scratch.path("out")) == ["f5"])
        #expect(try server.scratch.readFile("out/f5") == Array("mine".utf8))
        await connection.close()
    }
}
