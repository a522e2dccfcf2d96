public import Foundation
import Glibc
import Synchronization

/// A long-running program a test starts and stops itself (`fleet-client serve`, `systemd-socket-activate`,
/// chromedriver): in its own process group, so that ``stop()`` ends it and every child it started (Chromium
/// leaves several) by that group's ID and the PIDs found below it, never by name.
public final class SpawnedProcess: Sendable {
    public let pid: pid_t
    public let logPath: String
    private let exitStatus = Mutex<Int32?>(nil)

    /// Starts `arguments` with stdin from /dev/null and stdout and stderr into `logPath`; `environment`
    /// is added to this process's own.
    public init(_ arguments: [String], logPath: String, environment: [String: String] = [:]) throws {
        self.logPath = logPath
        self.pid = try ProcessTable.spawn(arguments, logPath: logPath, environment: environment, newProcessGroup: true)
    }

    /// What it printed so far.
    public func log() -> String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Its exit status once it ended (128 + signal when killed), without waiting; nil while it runs.
    public func exited() -> Int32? {
        exitStatus.withLock { status in
            if let status { return status }
            var raw: Int32 = 0
            guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }
            let code = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            status = code
            return code
        }
    }

    /// Waits up to `timeout` for it to end by itself.
    public func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = exited() { return status }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return exited()
    }

    /// Waits until its log contains `text`, or it exits, or `timeout` passes.
    public func waitForLog(_ text: String, timeout: Duration = .seconds(30)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let log = log()
            if log.contains(text) { return log }
            if let status = exited() {
                throw TestSupportError("exited (\(status)) before logging \"\(text)\":\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSupportError("did not log \"\(text)\" in time:\n\(log())")
    }

    /// Ends it and everything it started: SIGTERM to its group and descendants, SIGKILL to what is left
    /// after five seconds. Idempotent; safe in `defer`.
    ///
    /// The group is signalled only while its leader is unreaped (alive or a zombie), so its ID cannot
    /// belong to anyone else; once reaped, the members still in the group (which keep the ID reserved) are
    /// signalled by PID.
    public func stop() {
        if exitStatus.withLock({ $0 == nil }) {
            let descendants = ProcessTable.descendants(of: pid)
            kill(-pid, SIGTERM)
            for child in descendants { kill(child, SIGTERM) }
            let deadline = ContinuousClock.now + .seconds(5)
            while !hasEnded() && ContinuousClock.now < deadline { usleep(20_000) }
            kill(-pid, SIGKILL)
            for child in descendants where kill(child, 0) == 0 { kill(child, SIGKILL) }
            exitStatus.withLock { status in
                guard status == nil else { return }
                var raw: Int32 = 0
                _ = waitpid(pid, &raw, 0)
                status = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            }
        }
        // Members still in the group keep its ID reserved: they are this process's, and are ended by PID.
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            let left = ProcessTable.members(ofGroup: pid)
            guard !left.isEmpty else { return }
            for member in left { kill(member, SIGKILL) }
            usleep(20_000)
        }
    }

    /// Whether it ended, without reaping it (so its process group ID stays reserved).
    private func hasEnded() -> Bool {
        if exitStatus.withLock({ $0 != nil }) { return true }
        var info = siginfo_t()
        return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0
            && info._sifields._sigchld.si_pid == pid
    }
}
