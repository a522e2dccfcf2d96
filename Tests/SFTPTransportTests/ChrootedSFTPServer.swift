import FleetTestSupport
import Foundation
import Glibc
import SFTPTransport
import Testing

/// A real sshd serving one chrooted, SFTP-only user, as the fleet server does. Call ``stop()`` in `defer`.
///
/// Layout under a root-owned `/var/lib/fleet-test/<uuid>`:
/// `chroot/` (root 0755) with `data/` (root 0755, read-only for the user) and `logs/` (the user's, 0750);
/// `keys/<user>` (root 0644) as the AuthorizedKeysFile, outside the chroot.
struct ChrootedSFTPServer {
    let root: TestDirectory
    let scratch: TestDirectory
    let user: TestUser
    let clientKey: KeyPair
    let sshd: TestSSHD

    var chroot: String { root.path("chroot") }

    static func start(hostKeyTypes: [String] = ["ed25519"]) throws -> ChrootedSFTPServer {
        let root = try TestDirectory.makeRootOwned()
        let scratch: TestDirectory
        do {
            scratch = try TestDirectory.makeTemporary()
        } catch {
            root.remove()
            throw error
        }
        var user: TestUser?
        do {
            let created = try TestUser.create(prefix: "fsftp")
            user = created
            let clientKey = try KeyPair.generate(at: scratch.path("client_key"), comment: "client@\(created.name)")
            try root.makeDirectory("chroot")
            try root.makeDirectory("chroot/data")
            try root.makeDirectory("chroot/logs", mode: 0o750, owner: created.uid, group: created.gid)
            try root.makeDirectory("keys")
            try root.writeFile("keys/\(created.name)", text: clientKey.publicKeyLine + "\n")
            let sshd = try TestSSHD.start(
                configBody: configBody(user: created.name, root: root), hostKeyTypes: hostKeyTypes)
            return ChrootedSFTPServer(root: root, scratch: scratch, user: created, clientKey: clientKey, sshd: sshd)
        } catch {
            user?.remove()
            scratch.remove()
            root.remove()
            throw error
        }
    }

    /// The hardened per-host policy from the research notes.
    static func configBody(user: String, root: TestDirectory) -> String {
        """
        LogLevel VERBOSE
        UsePAM no
        PermitRootLogin no
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        AuthenticationMethods publickey
        StrictModes yes
        AuthorizedKeysFile \(root.path("keys"))/%u
        AllowUsers \(user)
        Subsystem sftp internal-sftp
        Match User \(user)
            ChrootDirectory \(root.path("chroot"))
            ForceCommand internal-sftp -u 0027 -P symlink,hardlink,setstat,fsetstat,lsetstat
            PermitTTY no
            DisableForwarding yes

        """
    }

    func endpoint(
        identityFile: String? = nil, pinnedHostKey: String? = nil, connectTimeout: Duration = .seconds(10),
        ioTimeout: Duration = .seconds(30)
    ) -> SSHEndpoint {
        SSHEndpoint(
            host: "127.0.0.1", port: sshd.port, user: user.name, identityFile: identityFile ?? clientKey.privateKeyPath,
            pinnedHostKey: pinnedHostKey ?? sshd.hostPublicKey, connectTimeout: connectTimeout, ioTimeout: ioTimeout)
    }

    func connect(openingSFTP: Bool = true) async throws -> SFTPConnection {
        try await SFTPConnection.connect(to: endpoint(), openingSFTP: openingSFTP)
    }

    /// Places a root-owned, world-readable file in `chroot/data/`.
    func publish(_ name: String, _ bytes: [UInt8]) throws {
        try root.writeFile("chroot/data/\(name)", bytes, mode: 0o644)
    }

    /// Stops sshd before removing the user, whose sessions would otherwise keep it in use.
    func stop() {
        sshd.stop()
        user.remove()
        scratch.remove()
        root.remove()
    }
}

extension Trait where Self == ConditionTrait {
    /// These suites create users and run sshd, which needs root and OpenSSH's server.
    static var needsRootAndSSHD: Self {
        .enabled(
            if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd"),
            "needs root and /usr/sbin/sshd")
    }
}

/// `count` random bytes, quickly.
func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { buffer in
        for offset in stride(from: 0, to: count - 7, by: 8) {
            buffer.storeBytes(of: generator.next() as UInt64, toByteOffset: offset, as: UInt64.self)
        }
    }
    for index in (count / 8 * 8)..<count { bytes[index] = UInt8.random(in: 0...255, using: &generator) }
    return bytes
}
