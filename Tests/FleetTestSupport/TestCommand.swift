import Dispatch
import Foundation
import Synchronization

/// Runs a system tool (`ssh-keygen`, `useradd`, …) to completion and captures what it printed.
public enum TestCommand {
    public struct Output: Sendable {
        public let status: Int32
        public let standardOutput: String
        public let standardError: String

        public var succeeded: Bool { status == 0 }
    }

    /// Runs `executable` (an absolute path) with `arguments` and waits for it.
    ///
    /// - Throws: only when the tool cannot be started; a non-zero exit is reported in ``Output/status``.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String]) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let outputPipe = Pipe()
        let errorPipe = Pipe()
        process.standardOutput = outputPipe
        process.standardError = errorPipe
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw TestSupportError("Could not start \(executable): \(error).")
        }
        // Drain stderr concurrently so that a chatty tool cannot fill one pipe while we wait on the other.
        let errorData = LockedData()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errorData.set(errorPipe.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
        let output = outputPipe.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus, standardOutput: String(decoding: output, as: UTF8.self),
            standardError: String(decoding: errorData.get(), as: UTF8.self))
    }

    /// Runs a tool and throws with its stderr when it exits non-zero.
    @discardableResult
    public static func check(_ executable: String, _ arguments: [String]) throws -> Output {
        let output = try run(executable, arguments)
        guard output.succeeded else {
            let command = ([executable] + arguments).joined(separator: " ")
            throw TestSupportError(
                "\(command) exited with \(output.status): \(output.standardError)\(output.standardOutput)")
        }
        return output
    }
}

/// Hands bytes from the reader thread back to the caller.
private final class LockedData: Sendable {
    private let data = Mutex(Data())

    func set(_ value: Data) { data.withLock { $0 = value } }
    func get() -> Data { data.withLock { $0 } }
}
