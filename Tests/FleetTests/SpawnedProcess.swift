import FleetTestSupport
import Foundation
import Glibc
import Synchronization

/// A long-running program a test starts and stops itself (`fleet-client serve`, `systemd-socket-activate`,
/// chromedriver): in its own process group, so that ``stop()`` ends it and every child it started (Chromium
/// leaves several) by that group's ID and the PIDs found below it, never by name.
final class SpawnedProcess: Sendable {
    let pid: pid_t
    let logPath: String
    private let exitStatus = Mutex<Int32?>(nil)

    /// Starts `arguments` with stdin from /dev/null and stdout and stderr into `logPath`; `environment`
    /// is added to this process's own.
    init(_ arguments: [String], logPath: String, environment: [String: String] = [:]) throws {
        self.logPath = logPath
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 2, 1)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        let environ = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for entry in environ { free(entry) } }
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw TestSupportError("cannot start \(arguments[0]): \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    /// What it printed so far.
    func log() -> String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Its exit status once it ended (128 + signal when killed), without waiting; nil while it runs.
    func exited() -> Int32? {
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
    func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = exited() { return status }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return exited()
    }

    /// Waits until its log contains `text`, or it exits, or `timeout` passes.
    func waitForLog(_ text: String, timeout: Duration = .seconds(30)) async throws -> String {
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
    func stop() {
        if exitStatus.withLock({ $0 == nil }) {
            let descendants = Self.descendants(of: pid)
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
            let left = Self.members(ofGroup: pid)
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

    /// The processes below `root` right now, from /proc.
    static func descendants(of root: pid_t) -> [pid_t] {
        let parents = parentTable()
        var result: [pid_t] = []
        var queue = [root]
        while let next = queue.popLast() {
            let children = parents.filter { $0.value == next }.map(\.key)
            result += children
            queue += children
        }
        return result
    }

    /// The command line of `pid`, arguments joined by spaces; nil when it is gone.
    static func commandLine(of pid: pid_t) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        return String(decoding: data, as: UTF8.self).split(separator: "\0").joined(separator: " ")
    }

    /// Every process whose command line contains `text`.
    static func processes(commandLineContaining text: String) -> [pid_t] {
        parentTable().keys.filter { commandLine(of: $0)?.contains(text) == true }
    }

    /// The live processes in process group `group` (zombies are dead already).
    static func members(ofGroup group: pid_t) -> [pid_t] {
        processTable().filter { $0.value.group == group && !$0.value.zombie }.map(\.key)
    }

    private static func parentTable() -> [pid_t: pid_t] {
        processTable().mapValues(\.parent)
    }

    private static func processTable() -> [pid_t: (parent: pid_t, group: pid_t, zombie: Bool)] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [:] }
        var table: [pid_t: (parent: pid_t, group: pid_t, zombie: Bool)] = [:]
        for entry in entries {
            guard let pid = pid_t(entry),
                let stat = FileManager.default.contents(atPath: "/proc/\(pid)/stat")
            else { continue }
            let text = String(decoding: stat, as: UTF8.self)
            guard let close = text.lastIndex(of: ")") else { continue }
            let fields = text[text.index(after: close)...].split(separator: " ")
            if fields.count > 2, let parent = pid_t(fields[1]), let group = pid_t(fields[2]) {
                table[pid] = (parent, group, fields[0] == "Z")
            }
        }
        return table
    }
}
