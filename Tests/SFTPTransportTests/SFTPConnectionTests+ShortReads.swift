import FleetTestSupport
@_spi(Testing) import SFTPTransport
import Synchronization
import Testing

extension SFTPConnectionTests {
    /// Asking for more than OpenSSH's largest read (255 KiB) makes every reply short, as a server with a lower
    /// limit would; the pipeline must ask again for the rest and still assemble the file exactly.
    @Test func assemblesFilesFromShortReplies() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let content = randomBytes(5 << 20 + 4_321)
        try server.publish("snapshot", content)
        let requestSize: UInt32 = 300 << 10
        let connection = try await SFTPConnection.connect(to: server.endpoint(), readRequestSize: requestSize)

        let replies = Mutex(0)
        try await connection.download(
            "/data/snapshot", to: server.scratch.path("snapshot"), expectedSize: Int64(content.count), limit: 8 << 20,
            progress: { _ in replies.withLock { $0 += 1 } })
        #expect(try server.scratch.readFile("snapshot") == content)
        let fullRequests = (content.count + Int(requestSize) - 1) / Int(requestSize)
        #expect(replies.withLock { $0 } > fullRequests + fullRequests / 2, "short replies were followed up")
        #expect(try await connection.readFile("/data/snapshot", limit: 8 << 20) == content)
        // The session is still in step afterwards.
        #expect(try await connection.listDirectory("/data").map(\.name) == ["snapshot"])
        await connection.close()
    }
}
