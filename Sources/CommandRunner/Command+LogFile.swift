import Glibc
import Subprocess
import SystemPackage

extension Command {
    /// Runs `executable` with its standard output and error both appended to the file at `logPath` as they
    /// come, in the order the program writes them, and returns its exit status (128 + the signal when one
    /// ended it).
    ///
    /// Nothing is kept in memory, so no amount of output can make a successful command fail (a NixOS build
    /// logs megabytes); the file is the whole log. With a `timeout`, the program runs in its own session and,
    /// when time is up, its whole process group gets SIGTERM, then SIGKILL two seconds later, and this throws
    /// ``CommandError/Code/timedOut(_:)``.
    ///
    /// - Parameters:
    ///   - environment: changes to the inherited environment; nil removes a variable.
    ///   - onLine: when given, each line of the output as soon as it ends (cut at 4 KiB), for a journal that
    ///     shows a long build as it goes; the file still gets every byte.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String?] = [:],
        appendingOutputTo logPath: String, timeout: Duration? = nil,
        onLine: (@Sendable (String) -> Void)? = nil
    ) async throws(CommandError) -> Int32 {
        let commandLine = ([executable] + arguments).joined(separator: " ")
        let log: FileDescriptor
        do {
            log = try FileDescriptor.open(
                FilePath(logPath), .writeOnly, options: [.create, .append, .closeOnExec],
                permissions: [.ownerReadWrite])
        } catch {
            throw CommandError(commandLine: commandLine, code: .couldNotStart, underlying: error)
        }
        defer { try? log.close() }
        let program = Self.program(executable, environment: environment)
        let updates = Self.environmentUpdates(environment)
        guard let timeout else {
            return try await runLogged(
                program, arguments, updates: updates, log: log, ownSession: false, commandLine: commandLine,
                logPath: logPath, onLine: onLine)
        }
        return try await withTimeout(timeout, commandLine: commandLine) { () async throws(CommandError) in
            try await runLogged(
                program, arguments, updates: updates, log: log, ownSession: true, commandLine: commandLine,
                logPath: logPath, onLine: onLine)
        }
    }

    private static func runLogged(
        _ program: Executable, _ arguments: [String], updates: [Environment.Key: String?], log: FileDescriptor,
        ownSession: Bool, commandLine: String, logPath: String, onLine: (@Sendable (String) -> Void)?
    ) async throws(CommandError) -> Int32 {
        let options = platformOptions(ownSession: ownSession)
        if let onLine {
            // Through a pipe this process reads: every chunk into the file, every line to `onLine`.
            do {
                let result = try await Subprocess.run(
                    program, arguments: Arguments(arguments), environment: .inherit.updating(updates),
                    platformOptions: options, input: .none, output: .sequence, error: .combinedWithOutput
                ) { execution in
                    var line: [UInt8] = []
                    // A file that cannot be written (a full disk) must not fail the command: its lines still
                    // reach `onLine`, and one line says the file is incomplete.
                    var fileWritable = true
                    for try await buffer in execution.standardOutput {
                        buffer.withUnsafeBytes { bytes in
                            if fileWritable {
                                do {
                                    _ = try log.writeAll(bytes)
                                } catch {
                                    fileWritable = false
                                    onLine(
                                        "[fleet: cannot write \(logPath) (\(error)); it holds only the output before this]"
                                    )
                                }
                            }
                            for byte in bytes {
                                if byte == UInt8(ascii: "\n") {
                                    onLine(String(decoding: line, as: UTF8.self))
                                    line.removeAll(keepingCapacity: true)
                                } else if line.count < 4096 {
                                    line.append(byte)
                                }
                            }
                        }
                    }
                    if !line.isEmpty { onLine(String(decoding: line, as: UTF8.self)) }
                }
                return Self.exitCode(result.terminationStatus)
            } catch {
                throw CommandError(commandLine: commandLine, running: error, outputLimit: 0)
            }
        }
        do {
            let result = try await Subprocess.run(
                program, arguments: Arguments(arguments), environment: .inherit.updating(updates),
                platformOptions: options, input: .none,
                output: .fileDescriptor(log, closeAfterSpawningProcess: false),
                error: .fileDescriptor(log, closeAfterSpawningProcess: false))
            return Self.exitCode(result.terminationStatus)
        } catch {
            throw CommandError(commandLine: commandLine, running: error, outputLimit: 0)
        }
    }

    /// The last `bytes` of the file at `path` (at most), as text: the end of a log, where a failure says why.
    public static func tail(ofFile path: String, bytes: Int = 64 << 10) -> String {
        guard let file = try? FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec]) else {
            return ""
        }
        defer { try? file.close() }
        guard let end = try? file.seek(offset: 0, from: .end) else { return "" }
        let start = max(0, end - Int64(bytes))
        var buffer = [UInt8](repeating: 0, count: Int(end - start))
        let read = (try? buffer.withUnsafeMutableBytes { try file.read(fromAbsoluteOffset: start, into: $0) }) ?? 0
        return String(decoding: buffer.prefix(read), as: UTF8.self)
    }
}
