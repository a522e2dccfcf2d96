import Subprocess

/// A command could not be started, or ended in a way the caller did not accept.
///
/// Callers branch on ``code`` (a timeout is not a missing program is not an exit status), never on the text;
/// ``description`` is what the user sees.
public struct CommandError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// The program could not be started (not found, not executable, no resources).
        case couldNotStart
        /// It ran longer than allowed; its process group was killed.
        case timedOut(Duration)
        /// It wrote more than the caller keeps (bytes) on standard output or error.
        case outputLimitExceeded(Int)
        /// Its output could not be read or its input written.
        case inputOutputFailed
        /// It exited with a status the caller does not accept (128 + the signal when a signal ended it).
        case exited(status: Int32, standardError: String)
    }

    public let commandLine: String
    public let code: Code
    /// The error underneath, from Subprocess or the system, when there is one.
    public let underlying: (any Error)?

    public init(commandLine: String, code: Code, underlying: (any Error)? = nil) {
        self.commandLine = commandLine
        self.code = code
        self.underlying = underlying
    }

    /// Wraps what Subprocess threw, keeping it, with the code it stands for.
    init(commandLine: String, running error: any Error, outputLimit: Int) {
        let code: Code
        if let error = error as? SubprocessError {
            switch error.code {
            case .outputLimitExceeded: code = .outputLimitExceeded(outputLimit)
            case .failedToReadFromSubprocess, .failedToWriteToSubprocess, .asyncIOFailed: code = .inputOutputFailed
            default: code = .couldNotStart
            }
        } else {
            code = .couldNotStart
        }
        self.init(commandLine: commandLine, code: code, underlying: error)
    }

    /// Why, in words: what follows the command line in ``description``.
    public var reason: String {
        switch code {
        case .couldNotStart:
            return "could not run" + (underlying.map { ": \($0)" } ?? "")
        case .timedOut(let limit):
            return "did not finish within \(limit) and was killed"
        case .outputLimitExceeded(let limit):
            return "wrote more than \(limit) bytes of output, more than is kept"
        case .inputOutputFailed:
            return "could not be read from or written to" + (underlying.map { ": \($0)" } ?? "")
        case .exited(let status, let standardError):
            let detail = standardError.trimmingWhitespace()
            return "exited with status \(status)" + (detail.isEmpty ? "" : ": \(detail)")
        }
    }

    public var description: String { "`\(commandLine)` \(reason)" }
}
