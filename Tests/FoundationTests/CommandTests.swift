import CommandRunner
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
}
