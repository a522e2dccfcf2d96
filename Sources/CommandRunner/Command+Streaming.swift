import Subprocess
import SystemPackage

extension Command {
    /// Runs `executable` and hands each line it writes to standard error to `onLine` as soon as the line ends,
    /// for a caller that shows a long command's progress while it runs. Standard output is discarded and
    /// standard input is empty. Returns the exit status (128 + the signal when it was killed).
    ///
    /// Lines longer than `lineLimit` bytes are cut there (the rest of the line is dropped), so a runaway
    /// line cannot grow memory; reading never stops early, so the command never blocks on a full pipe.
    ///
    /// - Parameters:
    ///   - environment: changes to the inherited environment; nil removes a variable.
    ///   - ownSession: runs the command in a session (and process group) of its own, so that signals sent to
    ///     this process's group (a terminal's Ctrl-C, a service manager stopping it) do not reach it.
    public static func streamingStandardError(
        _ executable: String, _ arguments: [String], environment: [String: String?] = [:], lineLimit: Int = 4096,
        ownSession: Bool = false, onLine: @escaping @Sendable (String) -> Void
    ) async throws(CommandError) -> Int32 {
        let commandLine = ([executable] + arguments).joined(separator: " ")
        let program = Self.program(executable)
        let updates = Self.environmentUpdates(environment)
        var options = PlatformOptions()
        options.createSession = ownSession
        do {
            let result = try await Subprocess.run(
                program, arguments: Arguments(arguments), environment: .inherit.updating(updates),
                platformOptions: options, input: .none, output: .discarded, error: .sequence
            ) { execution in
                var line: [UInt8] = []
                for try await buffer in execution.standardError {
                    buffer.withUnsafeBytes { bytes in
                        for byte in bytes {
                            if byte == UInt8(ascii: "\n") {
                                onLine(String(decoding: line, as: UTF8.self))
                                line.removeAll(keepingCapacity: true)
                            } else if line.count < lineLimit {
                                line.append(byte)
                            }
                        }
                    }
                }
                if !line.isEmpty { onLine(String(decoding: line, as: UTF8.self)) }
            }
            return Self.exitCode(result.terminationStatus)
        } catch {
            throw CommandError(commandLine: commandLine, running: error, outputLimit: lineLimit)
        }
    }
}
