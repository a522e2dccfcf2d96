import FleetTestSupport
import SFTPTransport
import Testing

extension SFTPConnectionTests {
    /// `withConnection` hands its body a live connection and closes it on the way out, whether the body returns
    /// or throws; a connection that escaped the scope is closed (``SSHError/Code/notConnected``).
    @Test func withConnectionClosesTheConnectionOnEveryWayOut() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        let content = Array("generation 7\n".utf8)
        try server.publish("manifest", content)
        let endpoint = server.endpoint()

        let (returned, bytes) = try await SFTPConnection.withConnection(to: endpoint) { connection throws(SSHError) in
            (connection, try await connection.readFile("/data/manifest", limit: 1024))
        }
        #expect(bytes == content)
        let afterReturn = await #expect(throws: SSHError.self) {
            try await returned.readFile("/data/manifest", limit: 1024)
        }
        #expect(afterReturn?.code == .notConnected)

        var escaped: SFTPConnection?
        let thrown = await #expect(throws: SSHError.self) {
            try await SFTPConnection.withConnection(to: endpoint) { connection throws(SSHError) in
                escaped = connection
                _ = try await connection.readFile("/data/missing", limit: 1024)
            }
        }
        #expect(thrown?.code == .noSuchFile)
        let afterThrow = await #expect(throws: SSHError.self) {
            try await escaped?.readFile("/data/manifest", limit: 1024)
        }
        #expect(afterThrow?.code == .notConnected)
    }
}
