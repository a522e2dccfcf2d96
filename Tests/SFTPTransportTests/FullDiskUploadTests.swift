import FleetTestSupport
import Foundation
import SFTPTransport
import Testing

/// What a host sees when the server cannot store its upload: OpenSSH maps `ENOSPC` and `EDQUOT` alike to a plain
/// SFTP failure, so the error says the disk or the host's quota may be full, and nothing is renamed into place.
@Suite(.serialized, .needsRootAndSSHD)
struct FullDiskUploadTests {
    @Test func anUploadToAFullDiskFailsSayingTheDiskOrQuotaMayBeFull() async throws {
        let server = try ChrootedSFTPServer.start()
        defer { server.stop() }
        // A 64 KiB tmpfs as the user's logs/: full after one small file.
        let logs = server.chroot + "/logs"
        let mount = try TestCommand.run(
            "/usr/bin/mount",
            ["-t", "tmpfs", "-o", "size=64k,mode=0750,uid=\(server.user.uid),gid=\(server.user.gid)", "tmpfs", logs])
        try #require(mount.succeeded, "\(mount.standardError)")
        defer { _ = try? TestCommand.run("/usr/bin/umount", [logs]) }

        let connection = try await server.connect()
        try await connection.replaceFile("/logs/small", bytes: Array("fits\n".utf8), through: "/logs/.small")
        await #expect {
            try await connection.replaceFile(
                "/logs/report", bytes: [UInt8](repeating: 0x7b, count: 1 << 20), through: "/logs/.report")
        } throws: { error in
            "\(error)".contains("the server's disk, or this user's disk quota there, may be full")
        }
        #expect(try await connection.listDirectory("/logs").map(\.name).contains("report") == false)
        // What was there before is intact.
        #expect(try await connection.readFile("/logs/small", limit: 1024) == Array("fits\n".utf8))
        await connection.close()
    }
}
