import CommandRunner
import FleetFiles
import FleetTestSupport
import Testing

/// What a command's failure is, as a code callers can branch on (the text is for people).
@Suite("Running commands")
struct CommandTests {
    func code(_ body: () async throws -> Void) async -> CommandError.Code? {
        do {
            try await body()
            return nil
        } catch let error as CommandError {
            return error.code
        } catch {
            Issue.record("not a CommandError: \(error)")
            return nil
        }
    }

    @Test func eachWayACommandCanFailHasItsCode() async throws {
        #expect(await code { _ = try await Command.run("/nonexistent/program", []) } == .couldNotStart)
        #expect(
            await code { _ = try await Command.run("/bin/sleep", ["5"], timeout: .milliseconds(200)) }
                == .timedOut(.milliseconds(200)))
        #expect(
            await code { _ = try await Command.run("/bin/sh", ["-c", "head -c 5000 /dev/zero"], outputLimit: 1000) }
                == .outputLimitExceeded(1000))
        #expect(
            await code { try await Command.checked("/bin/sh", ["-c", "echo broken >&2; exit 3"]) }
                == .exited(status: 3, standardError: "broken\n"))
        let output = try await Command.run("/bin/sh", ["-c", "exit 4"])
        #expect(output.exitCode == 4)
    }

    @Test func theDescriptionNamesTheCommandAndWhy() async {
        do {
            try await Command.checked("/bin/sh", ["-c", "echo no such thing >&2; exit 2"])
            Issue.record("expected a failure")
        } catch {
            #expect(
                error.description == "`/bin/sh -c echo no such thing >&2; exit 2` exited with status 2: no such thing")
        }
    }

    /// A name is found in PATH without a process start per directory: the first absolute directory's regular file
    /// that may be executed. What is not that (a relative directory, a directory, a file without `x`) is skipped.
    @Test func aNameIsFoundInThePathWithoutSpawningAndWhatCannotRunIsSkipped() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        for name in ["a", "b", "c", "d"] { try FileIO.ensureDirectory(directory.path(name), mode: 0o755) }
        try FileIO.ensureDirectory(directory.path("a/tool"), mode: 0o755)
        try FileIO.writeAtomically(Array("#!/bin/sh\necho b\n".utf8), to: directory.path("b/tool"), mode: 0o644)
        try FileIO.writeAtomically(Array("#!/bin/sh\necho c\n".utf8), to: directory.path("c/tool"), mode: 0o755)
        try FileIO.writeAtomically(Array("#!/bin/sh\necho d\n".utf8), to: directory.path("d/tool"), mode: 0o755)
        let searchPath = [
            "relative", directory.path("missing"), directory.path("a"), directory.path("b"),
            directory.path("c"), directory.path("d"),
        ].joined(separator: ":")
        #expect(Command.find("tool", inSearchPath: searchPath) == directory.path("c/tool"))
        #expect(Command.find("nothing", inSearchPath: searchPath) == nil)
        for name in ["", ".", "..", "c/tool"] { #expect(Command.find(name, inSearchPath: searchPath) == nil) }
        // A found name runs; a name found nowhere fails as it always did.
        #expect(try await Command.run("true", []).succeeded)
        #expect(await code { _ = try await Command.run("fleet-no-such-program", []) } == .couldNotStart)
    }
}
