public import CommandRunner
import FleetFiles
public import FleetProtocol
import Foundation
public import Inventory
import Publishing
public import ServerStore

/// A throwaway fleet repository with its own chroot root and state directory, and a way to run the real
/// `fleet` executable on it.
public struct FleetFixture: Sendable {
    public let directory: TestDirectory
    public var repository: String { directory.path("repo") }
    public var chrootRoot: String { directory.path("chroot") }
    public var stateDirectory: String { directory.path("state") }

    /// Creates a repository with `hosts` (each a flake.nix and a `common` link) and a signing key.
    /// With `rootOwned`, it lives under /var/lib/fleet-test so that sshd accepts its chroots.
    public init(hosts: [String], extraToml: String = "", rootOwned: Bool = false, serverToml: String = "") throws {
        directory = rootOwned ? try TestDirectory.makeRootOwned() : try TestDirectory.makeTemporary()
        try FileIO.createDirectories(repository + "/common")
        try write("common/base.nix", "{ motd = [ \"shared\" ]; }\n")
        var toml = "[server]\nchroot_root = \"\(chrootRoot)\"\nstate_dir = \"\(stateDirectory)\"\n\(serverToml)\n"
        for host in hosts {
            try addHost(host)
            toml += "[hosts.\(host)]\nkey = \"\(KeyPair.publicLine(forHost: host))\"\n"
        }
        try write("fleet.toml", toml + extraToml)
        _ = try SigningKeyFile.generateIfMissing(stateDirectory: stateDirectory, name: "test-fleet-1")
    }

    public func addHost(_ host: String) throws {
        try FileIO.createDirectories(repository + "/hosts/" + host)
        try write("hosts/\(host)/flake.nix", "{ outputs = { self }: { }; } # \(host)\n")
        try link("hosts/\(host)/common", to: "../../common")
    }

    public func write(_ relative: String, _ text: String, mode: UInt32 = 0o644) throws {
        let path = repository + "/" + relative
        try FileIO.createDirectories(FileIO.split(path).directory)
        _ = unlink(path)
        try FileIO.writeAtomically(Array(text.utf8), to: path, mode: mode)
    }

    public func link(_ relative: String, to target: String) throws {
        let path = repository + "/" + relative
        try FileIO.createDirectories(FileIO.split(path).directory)
        guard symlink(target, path) == 0 else { throw FileSystemError("symlink", path: path) }
    }

    public func remove() { directory.remove() }

    public func configuration() throws -> FleetConfiguration { try FleetConfiguration.load(repository: repository) }

    public func host(_ name: String) throws -> HostName { try HostName(name) }

    public func layout(_ host: String) throws -> ChrootLayout {
        ChrootLayout(root: chrootRoot, host: try HostName(host))
    }

    public func verifyingKey() throws -> VerifyingKey {
        try SigningKeyFile.load(stateDirectory: stateDirectory).publicKey
    }

    /// Reads and verifies a host's current manifest, and checks its snapshot's size and SHA-256.
    public func verifiedManifest(_ host: String) throws -> Manifest {
        let layout = try layout(host)
        let manifest = try Manifest.verify(try FileIO.readNoFollow(layout.manifest), with: try verifyingKey())
        let snapshot = try FileIO.read(layout.snapshot(manifest.generation))
        guard Int64(snapshot.count) == manifest.snapshot.size, SHA256Hasher.hex(snapshot) == manifest.snapshot.sha256
        else {
            throw TestSupportError("snapshot of \(host) generation \(manifest.generation) does not match its manifest")
        }
        return manifest
    }

    /// Runs the built `fleet` executable with `--repo` and the fixture's directories.
    public func fleet(_ arguments: [String], environment: [String: String] = [:]) async throws -> CommandOutput {
        try await Command.run(
            Self.executable("fleet"), arguments + ["--repo", repository],
            environment: ["FLEET_CHROOT_ROOT": chrootRoot, "FLEET_STATE_DIR": stateDirectory].merging(environment) {
                $1
            })
    }

    /// Every file under the chroot root with its size, mode, inode and mtime: equal listings mean nothing
    /// changed on disk.
    public func chrootListing() throws -> [String] {
        var lines: [String] = []
        func walk(_ path: String) throws {
            guard let status = try FileStatus.of(path) else { return }
            lines.append(
                "\(path) \(status.kind) \(String(status.permissions, radix: 8)) \(status.size) \(status.inode) \(status.modificationSeconds).\(status.modificationNanoseconds)"
            )
            if status.kind == .directory {
                for name in try FileIO.listDirectory(path).sorted() { try walk(path + "/" + name) }
            }
        }
        try walk(chrootRoot)
        return lines
    }

    /// The path of an executable built beside the test bundle (`.build/<config>/`).
    public static func executable(_ name: String) -> String {
        let testBinary = (try? FileIO.readLink("/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = FileIO.split(testBinary).directory
        // On Linux the test runner is `<build>/fleetPackageTests.xctest`; executables sit beside it.
        while !FileManager.default.isExecutableFile(atPath: directory + "/" + name) && directory != "/" {
            directory = FileIO.split(directory).directory
        }
        return directory + "/" + name
    }
}
