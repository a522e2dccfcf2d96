import Subprocess
import SystemPackage

/// What a finished command printed and how it ended.
public struct CommandOutput: Sendable {
    public let exitCode: Int32
    public let standardOutput: String
    public let standardError: String

    public var succeeded: Bool { exitCode == 0 }
}

/// A command could not be started, or ended in a way the caller did not accept.
public struct CommandError: Error, CustomStringConvertible, Sendable {
    public let commandLine: String
    public let reason: String

    public var description: String { "`\(commandLine)` \(reason)" }
}

/// Runs external programs (git, useradd, nix, …) without a shell, so no argument is ever interpreted.
public enum Command {
    /// Runs `executable` (a name looked up in PATH, or a path) with `arguments` and collects its output.
    ///
    /// A non-zero exit status is a normal result here; use ``checked(_:_:environment:input:)`` to treat it as an error.
    /// With a `timeout`, the program runs in its own session and, when time is up, its whole process group gets
    /// SIGTERM, then SIGKILL two seconds later, and this throws saying so.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], input: String? = nil,
        outputLimit: Int = 16 << 20, timeout: Duration? = nil
    ) async throws(CommandError) -> CommandOutput {
        let commandLine = ([executable] + arguments).joined(separator: " ")
        guard let timeout else {
            return try await runToCompletion(
                executable, arguments, environment: environment, input: input, outputLimit: outputLimit,
                ownSession: false)
        }
        let result: Result<CommandOutput, CommandError>? = await withTaskGroup(
            of: Result<CommandOutput, CommandError>?.self
        ) { group in
            group.addTask {
                do throws(CommandError) {
                    return .success(
                        try await runToCompletion(
                            executable, arguments, environment: environment, input: input, outputLimit: outputLimit,
                            ownSession: true))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let result else {
            throw CommandError(commandLine: commandLine, reason: "did not finish within \(timeout) and was killed")
        }
        return try result.get()
    }

    private static func runToCompletion(
        _ executable: String, _ arguments: [String], environment: [String: String], input: String?, outputLimit: Int,
        ownSession: Bool
    ) async throws(CommandError) -> CommandOutput {
        let commandLine = ([executable] + arguments).joined(separator: " ")
        let program: Executable = executable.contains("/") ? .path(.init(executable)) : .name(executable)
        var updates: [Environment.Key: String?] = [:]
        for (key, value) in environment {
            guard let name = Environment.Key(rawValue: key) else { continue }
            updates[name] = value
        }
        var options = PlatformOptions()
        if ownSession {
            options.createSession = true
            options.teardownSequence = [
                .send(signal: .terminate, toProcessGroup: true, allowedDurationToNextStep: .seconds(2)),
                .send(signal: .kill, toProcessGroup: true, allowedDurationToNextStep: .seconds(1)),
            ]
        }
        do {
            let result = try await Subprocess.run(
                program, arguments: Arguments(arguments), environment: .inherit.updating(updates),
                platformOptions: options, input: .string(input ?? ""), output: .string(limit: outputLimit),
                error: .string(limit: outputLimit))
            let code: Int32
            switch result.terminationStatus {
            case .exited(let status): code = status
            case .signaled(let signal): code = 128 + signal
            }
            return CommandOutput(
                exitCode: code, standardOutput: result.standardOutput, standardError: result.standardError)
        } catch {
            throw CommandError(commandLine: commandLine, reason: "could not run: \(error)")
        }
    }

    /// Like ``run(_:_:environment:input:outputLimit:)``, but a non-zero exit is an error carrying its stderr.
    @discardableResult
    public static func checked(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], input: String? = nil
    ) async throws(CommandError) -> CommandOutput {
        let output = try await run(executable, arguments, environment: environment, input: input)
        guard output.succeeded else {
            let detail = output.standardError.trimmingWhitespace()
            throw CommandError(
                commandLine: ([executable] + arguments).joined(separator: " "),
                reason: "exited with status \(output.exitCode)" + (detail.isEmpty ? "" : ": \(detail)"))
        }
        return output
    }
}

extension String {
    /// The string without leading and trailing spaces and newlines.
    public func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
