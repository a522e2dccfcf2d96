import CommandRunner
import FleetFiles
public import FleetProtocol
import Foundation
import Synchronization

/// The log of one run: phase lines for the journal or terminal, and the full text (with command output) that
/// is uploaded to the server.
///
/// The full text is capped: past the limit, the middle is cut (the start says what was attempted, the end
/// how it failed) and the cut is written where it happened.
public final class RunLog: Sendable {
    private struct Buffer {
        var head: [UInt8] = []
        var tail: [UInt8] = []
        var cutBytes = 0
        var progressShown = false
    }

    public let limit: Int
    private let host: String
    private let echo: @Sendable (String) -> Void
    private let isTerminal: Bool
    private let clock: WallClock
    private let buffer = Mutex(Buffer())
    private let recorder = Mutex<RunProgressRecorder?>(nil)

    /// - Parameters:
    ///   - echo: where phase lines go as they happen (standard error by default: the journal under systemd).
    ///   - isTerminal: whether `echo` is a terminal, so that progress may redraw one line.
    ///   - clock: the time each kept line carries.
    public init(
        host: String, limit: Int, isTerminal: Bool, clock: WallClock = .system,
        echo: @escaping @Sendable (String) -> Void
    ) {
        self.host = host
        self.limit = max(limit, 4096)
        self.isTerminal = isTerminal
        self.clock = clock
        self.echo = echo
    }

    /// A log that echoes to standard error: the journal under systemd, or the terminal, or the page that
    /// started the run; once that reader is gone, lines still go to the log that is uploaded.
    public convenience init(host: String, limit: Int) {
        self.init(host: host, limit: limit, isTerminal: isatty(2) == 1) { line in
            FileIO.writeToStream(2, line)
        }
    }

    /// From now on, phase lines and streamed output also go to `progress.json` (the run holds the lock).
    public func record(into recorder: RunProgressRecorder) {
        self.recorder.withLock { $0 = recorder }
    }

    /// A step of the run: shown at once, and kept in the log with its time.
    public func phase(_ text: String) {
        recorder.withLock { $0 }?.phase(text)
        let finishProgress = buffer.withLock { buffer in
            defer { buffer.progressShown = false }
            return buffer.progressShown
        }
        echo((finishProgress ? "\n" : "") + "fleet-client[\(host)]: \(text)\n")
        append("\(UTCTime.iso(clock.now())) \(text)\n")
    }

    /// Progress within a step (bytes downloaded): redrawn in place on a terminal, not logged.
    public func progress(_ text: String) {
        guard isTerminal else { return }
        buffer.withLock { $0.progressShown = true }
        echo("\r\u{1b}[Kfleet-client[\(host)]: \(text)")
    }

    /// Output of a command, kept in the uploaded log only (the journal gets the phase lines).
    public func output(of command: String, exitCode: Int32, standardOutput: String, standardError: String) {
        var text = "--- \(command) (exit status \(exitCode))\n"
        if !standardOutput.isEmpty { text += standardOutput + (standardOutput.hasSuffix("\n") ? "" : "\n") }
        if !standardError.isEmpty { text += standardError + (standardError.hasSuffix("\n") ? "" : "\n") }
        text += "---\n"
        append(text)
    }

    /// A line a long command (a build) wrote, shown as it comes: the journal follows the build live. The
    /// uploaded log gets the command's whole output afterwards, from its file (``output(of:exitCode:file:)``).
    public func streamed(_ line: String) {
        recorder.withLock { $0 }?.streamed(line)
        echo("  " + line + "\n")
    }

    /// The output a command wrote into `path`, kept in the uploaded log like ``output(of:exitCode:standardOutput:standardError:)``
    /// (its start and its end when it is longer than the log may hold, saying how much was left out).
    public func output(of command: String, exitCode: Int32, file path: String) {
        let size = Int((try? FileStatus.of(path))??.size ?? 0)
        var text = "--- \(command) (exit status \(exitCode))\n"
        if size <= limit / 2 {
            text += String(decoding: (try? FileIO.read(path, limit: limit)) ?? [], as: UTF8.self)
        } else {
            let head = (try? FileIO.readHead(of: path, bytes: limit / 8)) ?? []
            text += String(decoding: head, as: UTF8.self)
            text += "\n[fleet-client: \(size - limit / 2) bytes of this output are only in \(path)]\n"
            text += Command.tail(ofFile: path, bytes: limit / 2 - limit / 8)
        }
        if !text.hasSuffix("\n") { text += "\n" }
        append(text + "---\n")
    }

    /// The whole log, capped at `limit` bytes plus the line saying what was cut.
    public func contents() -> [UInt8] {
        buffer.withLock { buffer in
            guard buffer.cutBytes > 0 else { return buffer.head + buffer.tail }
            let note =
                "\n[fleet-client: \(buffer.cutBytes) bytes of this log were cut here to keep it under \(limit) bytes]\n"
            return buffer.head + Array(note.utf8) + buffer.tail
        }
    }

    private func append(_ text: String) {
        let bytes = Array(text.utf8)
        let headLimit = limit / 4
        let tailLimit = limit - headLimit
        buffer.withLock { buffer in
            var rest = bytes[...]
            if buffer.cutBytes == 0 && buffer.tail.isEmpty && buffer.head.count < headLimit {
                let room = headLimit - buffer.head.count
                buffer.head += rest.prefix(room)
                rest = rest.dropFirst(room)
            }
            buffer.tail += rest
            if buffer.tail.count > tailLimit {
                let excess = buffer.tail.count - tailLimit
                buffer.tail.removeFirst(excess)
                buffer.cutBytes += excess
            }
        }
    }
}
