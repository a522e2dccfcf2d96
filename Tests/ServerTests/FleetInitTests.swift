import CommandRunner
import FleetFiles
import FleetTestSupport
import Testing

/// `fleet init`: where the signing key goes.
@Suite("fleet init")
struct FleetInitTests {
    /// A repository whose fleet.toml names its own state directory.
    static func repository(in directory: TestDirectory, fleetTOML: String? = nil) throws -> String {
        try directory.makeDirectory("repo", mode: 0o755)
        let toml =
            fleetTOML ?? """
                [server]
                address = "127.0.0.1"
                chroot_root = "\(directory.path("chroot"))"
                state_dir = "\(directory.path("state-from-toml"))"

                """
        try directory.writeFile("repo/fleet.toml", text: toml)
        return directory.path("repo")
    }

    static func fleet(_ arguments: [String]) async throws -> CommandOutput {
        // An empty FLEET_STATE_DIR counts as unset, whatever the environment running the tests says.
        try await Command.run(FleetFixture.executable("fleet"), arguments, environment: ["FLEET_STATE_DIR": ""])
    }

    @Test func theKeyGoesToTheStateDirectoryOfFleetTOML() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let repository = try Self.repository(in: directory)
        let output = try await Self.fleet(["init", "--key-only", "--repo", repository])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains("created signing key \(directory.path("state-from-toml"))/signing.key"))
        #expect(try FileStatus.of(directory.path("state-from-toml/signing.key"))?.permissions == 0o600)

        // The flag still wins.
        let flagged = try await Self.fleet([
            "init", "--key-only", "--repo", repository, "--state-dir", directory.path("state-from-flag"),
        ])
        #expect(flagged.exitCode == 0, "\(flagged.standardError)")
        #expect(try FileStatus.of(directory.path("state-from-flag/signing.key")) != nil)
    }

    @Test func aBrokenFleetTOMLIsAnErrorAndNoKeyIsMadeElsewhere() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let repository = try Self.repository(
            in: directory,
            fleetTOML: """
                [server]
                address = "127.0.0.1"
                state_dir = "relative/state"
                colour = "blue"

                """)
        let defaultKey = try FileStatus.of("/var/lib/fleet/signing.key")
        let output = try await Self.fleet(["init", "--key-only", "--repo", repository])
        #expect(output.exitCode != 0)
        #expect(output.standardError.contains("fleet.toml"), "\(output.standardError)")
        #expect(output.standardError.contains("state_dir"), "\(output.standardError)")
        #expect(try FileStatus.of("/var/lib/fleet/signing.key") == defaultKey, "nothing made in the default place")
        #expect(try FileIO.listDirectory(directory.path).sorted() == ["repo"])
    }
}
