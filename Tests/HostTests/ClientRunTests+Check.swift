import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import Testing

/// `fleet-client check` against a real server.
extension ClientRunTests {
    @Test func checkDownloadExtractsOnlyIntoANewDirectoryAndNeverRemovesWhatItDidNotCreate() async throws {
        let fleet = try await ClientFleet.start(hosts: ["alpha"])
        defer { fleet.stop() }
        let work = try TestDirectory.makeTemporary()
        defer { work.remove() }
        // Precious things: a directory with a file, the current directory of the check, and a name that looks
        // like the check's own scratch files beside the target.
        try work.makeDirectory("precious", mode: 0o755)
        try work.writeFile("precious/notes.txt", text: "keep me\n")
        try work.writeFile(".download-1.tar.zst", text: "not the check's\n")
        try work.makeDirectory(".incoming-1", mode: 0o755)
        try work.writeFile(".incoming-1/kept", text: "not the check's either\n")
        #expect(symlink(work.path("nowhere"), work.path("dangling")) == 0)
        let before = try FileIO.listDirectory(work.path).sorted()

        for existing in ["precious", "dangling", work.path("precious"), "."] {
            let output = try await Command.run(
                "/bin/sh",
                [
                    "-c", "cd \"$1\" && exec \"$2\" check --download \"$3\" --config \"$4\"", "sh",
                    work.path("precious"),
                    FleetFixture.executable("fleet-client"),
                    existing == "." || existing.hasPrefix("/") ? existing : "../" + existing, fleet.configPath("alpha"),
                ])
            #expect(output.exitCode == 1, "\(existing): \(output.standardError)")
            #expect(output.standardError.contains("already exists"), "\(existing): \(output.standardError)")
            #expect(!output.standardError.contains("downloading"), "refused before anything was read")
            #expect(try FileIO.listDirectory(work.path("precious")) == ["notes.txt"], "\(existing)")
            #expect(String(decoding: try FileIO.read(work.path("precious/notes.txt")), as: UTF8.self) == "keep me\n")
            #expect(try FileIO.listDirectory(work.path).sorted() == before, "\(existing)")
        }

        // A new directory: the snapshot lands in it, and nothing beside it is touched.
        let output = try await fleet.client("alpha", ["check", "--download", work.path("snapshot")])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardError.contains("extracted into \(work.path("snapshot"))"), "\(output.standardError)")
        #expect(try FileIO.listDirectory(work.path("snapshot")) == ["tree"])
        #expect(try FileStatus.of(work.path("snapshot/tree/flake.nix"))?.kind == .regular)
        #expect(try FileIO.listDirectory(work.path).sorted() == (before + ["snapshot"]).sorted())
        #expect(String(decoding: try FileIO.read(work.path(".incoming-1/kept")), as: UTF8.self).hasPrefix("not"))
        #expect(try FileStatus.of(fleet.stateDirectory("alpha") + "/state.json") == nil, "check applies nothing")
        #expect(fleet.activations("alpha").isEmpty)

        // A check that is refused after creating the directory removes only that (empty) directory.
        try fleet.plant("alpha", "/snapshots/1.tar.zst", Array("not a snapshot".utf8))
        let refused = try await fleet.client("alpha", ["check", "--download", work.path("second")])
        #expect(refused.exitCode == Self.refused, "\(refused.standardError)")
        #expect(try FileStatus.of(work.path("second")) == nil)
        #expect(try FileIO.listDirectory(work.path).sorted() == (before + ["snapshot"]).sorted())
    }
}
