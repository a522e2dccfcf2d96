import CommandRunner
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import Testing

/// What `fleet-client <command> --help` promises about exit statuses, checked against the real executable.
@Suite("fleet-client --help")
struct ClientHelpTests {
    /// The help text with its line wrapping undone.
    static func help(_ arguments: [String]) async throws -> String {
        let output = try await Command.run(FleetFixture.executable("fleet-client"), arguments + ["--help"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        return output.standardOutput.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// "<status> <words>" for a run's outcome: `16 local failure`, `15 rolled back`.
    static func named(_ outcome: RunOutcome) -> String {
        "\(outcome.exitStatus) \(outcome.rawValue.replacingOccurrences(of: "-", with: " "))"
    }

    @Test func runHelpListsEveryExitStatus() async throws {
        for text in [try await Self.help(["run"]), try await Self.help([])] {
            for outcome in RunOutcome.allCases {
                #expect(text.contains(Self.named(outcome)), "\(Self.named(outcome)) in: \(text)")
            }
            #expect(text.contains("1 any other error") && text.contains("64 wrong arguments"), "\(text)")
        }
    }

    @Test func checkHelpListsEveryExitStatusItCanReturn() async throws {
        let text = try await Self.help(["check"])
        let outcomes: [RunOutcome] = [.failed, .refused, .unreachable, .localFailure]
        for outcome in outcomes {
            #expect(text.contains(Self.named(outcome)), "\(Self.named(outcome)) in: \(text)")
        }
        #expect(text.contains("0 everything checks out"), "\(text)")
        #expect(text.contains("1 any other error") && text.contains("--download names an existing path"), "\(text)")
        #expect(text.contains("64 wrong arguments"), "\(text)")
        for outcome in [RunOutcome.applied, .locked, .rolledBack] {
            #expect(!text.contains(Self.named(outcome)), "check never \(outcome.rawValue): \(text)")
        }
    }
}
