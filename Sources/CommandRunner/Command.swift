import FleetFiles
import Glibc
import Subprocess
import SystemPackage

/// What a finished command printed and how it ended.
public struct CommandOutput: Sendable {
    public let exitCode: Int32
    public let standardOutput: String
    public let standardError: String

    public var succeeded: Bool { exitCode == 0 }
}

/// Runs external programs (git, useradd, nix, …) without a shell, so no argument is ever interpreted.
public enum Command {
    /// Runs `executable` (a name looked up in PATH, or a path) with `arguments` and collects its output.
    ///
    /// A non-zero exit status is a normal result here; use ``checked(_:_:environment:input:)`` to treat it as an error.
    /// `input` reaches the program as a file (unlinked at once), not a pipe: a program that exits without reading
    /// it cannot make this process fail writing it (EPIPE, or SIGPIPE killing it).
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
        return try await withTimeout(timeout, commandLine: commandLine) { () async throws(CommandError) in
            try await runToCompletion(
                executable, arguments, environment: environment, input: input, outputLimit: outputLimit,
                ownSession: true)
        }
    }

    /// Runs `body` (a program started in its own session) for at most `timeout`: past it the task is
    /// cancelled, which makes Subprocess tear the session's process group down (SIGTERM, then SIGKILL), and
    /// this throws ``CommandError/Code/timedOut(_:)``.
    static func withTimeout<Value: Sendable>(
        _ timeout: Duration, commandLine: String, _ body: @escaping @Sendable () async throws(CommandError) -> Value
    ) async throws(CommandError) -> Value {
        let result: Result<Value, CommandError>? = await withTaskGroup(of: Result<Value, CommandError>?.self) {
            group in
            group.addTask {
                do throws(CommandError) { return .success(try await body()) } catch { return .failure(error) }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let result else { throw CommandError(commandLine: commandLine, code: .timedOut(timeout)) }
        return try result.get()
    }

    /// Options that start the program in its own session when `ownSession`, so that a timeout ends its whole
    /// process group: SIGTERM, then SIGKILL two seconds later.
    static func platformOptions(ownSession: Bool) -> PlatformOptions {
        var options = PlatformOptions()
        if ownSession {
            options.createSession = true
            options.teardownSequence = [
                .send(signal: .terminate, toProcessGroup: true, allowedDurationToNextStep: .seconds(2)),
                .send(signal: .kill, toProcessGroup: true, allowedDurationToNextStep: .seconds(1)),
            ]
        }
        return options
    }

    private static func runToCompletion(
        _ executable: String, _ arguments: [String], environment: [String: String], input: String?, outputLimit: Int,
        ownSession: Bool
    ) async throws(CommandError) -> CommandOutput {
        let commandLine = ([executable] + arguments).joined(separator: " ")
        let changes = environment.mapValues { Optional($0) }
        let program = Self.program(executable, environment: changes)
        let updates = Self.environmentUpdates(changes)
        let options = platformOptions(ownSession: ownSession)
        do {
            let result: (terminationStatus: TerminationStatus, standardOutput: String, standardError: String)
            if let input {
                let file = try inputFile(input, commandLine: commandLine)
                let collected = try await Subprocess.run(
                    program, arguments: Arguments(arguments), environment: .inherit.updating(updates),
                    platformOptions: options, input: .fileDescriptor(file, closeAfterSpawningProcess: true),
                    output: .string(limit: outputLimit), error: .string(limit: outputLimit))
                result = (collected.terminationStatus, collected.standardOutput, collected.standardError)
            } else {
                let collected = try await Subprocess.run(
                    program, arguments: Arguments(arguments), environment: .inherit.updating(updates),
                    platformOptions: options, input: .string(""), output: .string(limit: outputLimit),
                    error: .string(limit: outputLimit))
                result = (collected.terminationStatus, collected.standardOutput, collected.standardError)
            }
            return CommandOutput(
                exitCode: Self.exitCode(result.terminationStatus), standardOutput: result.standardOutput,
                standardError: result.standardError)
        } catch {
            throw CommandError(commandLine: commandLine, running: error, outputLimit: outputLimit)
        }
    }

    /// A path when it has a slash; else the name found in PATH (the inherited one, unless `environment` changes
    /// it), as the first absolute directory's regular file this process may execute. Subprocess would instead
    /// spawn the name in each directory in turn until one is not ENOENT: a process start per PATH entry before
    /// `git` (in `/usr/bin`, after the toolchain's and Nix's directories) is found. A name not found is left to
    /// Subprocess, which says so in its own words.
    static func program(_ executable: String, environment: [String: String?] = [:]) -> Executable {
        if executable.contains("/") { return .path(.init(executable)) }
        guard environment["PATH"] == nil, let searchPath = getenv("PATH").map({ String(cString: $0) }),
            let found = find(executable, inSearchPath: searchPath)
        else { return .name(executable) }
        return .path(.init(found))
    }

    /// The first `<directory>/<name>` of `searchPath`'s absolute directories that is a regular file this process
    /// may execute; nil for none, and for a name that is empty, `.`, `..` or has a slash.
    package static func find(_ name: String, inSearchPath searchPath: String) -> String? {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/") else { return nil }
        for directory in searchPath.split(separator: ":") where directory.hasPrefix("/") {
            let candidate = String(directory.hasSuffix("/") ? directory + name : directory + "/" + name)
            var status = stat()
            if stat(candidate, &status) == 0, status.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    /// Changes to the inherited environment (nil removes a variable); names Subprocess cannot take are skipped.
    static func environmentUpdates(_ environment: [String: String?]) -> [Environment.Key: String?] {
        var updates: [Environment.Key: String?] = [:]
        for (key, value) in environment {
            guard let name = Environment.Key(rawValue: key) else { continue }
            updates[name] = value
        }
        return updates
    }

    /// The exit status, or 128 + the signal that ended it (as a shell reports it).
    static func exitCode(_ status: TerminationStatus) -> Int32 {
        switch status {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal
        }
    }

    /// An unlinked temporary file holding `text`, positioned at its start.
    private static func inputFile(_ text: String, commandLine: String) throws(CommandError) -> FileDescriptor {
        do {
            return try FileIO.unlinkedFile(containing: Array(text.utf8), prefix: ".fleet-input-")
        } catch {
            throw CommandError(commandLine: commandLine, code: .couldNotStart, underlying: error.code)
        }
    }

    /// Like ``run(_:_:environment:input:outputLimit:)``, but a non-zero exit is an error carrying its stderr.
    @discardableResult
    public static func checked(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], input: String? = nil
    ) async throws(CommandError) -> CommandOutput {
        let output = try await run(executable, arguments, environment: environment, input: input)
        guard output.succeeded else {
            throw CommandError(
                commandLine: ([executable] + arguments).joined(separator: " "),
                code: .exited(status: output.exitCode, standardError: output.standardError))
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
