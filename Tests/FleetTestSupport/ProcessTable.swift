import Foundation
public import Glibc

/// Starting the programs tests run (sshd, `fleet-client serve`, chromedriver) and finding their processes in
/// /proc, so that tests stop only what they started, by PID or process group, never by name.
public enum ProcessTable {
    /// Starts `arguments` with stdin from /dev/null and stdout and stderr appended to `logPath`.
    ///
    /// The child starts with no blocked and no ignored signals, whatever this test process does.
    /// - Parameters:
    ///   - environment: added to this process's own environment.
    ///   - newProcessGroup: puts the child in a group of its own (its PID), so that it and everything it
    ///     starts can be signalled together.
    public static func spawn(
        _ arguments: [String], logPath: String, environment: [String: String] = [:], newProcessGroup: Bool = false
    ) throws -> pid_t {
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
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        if newProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        let environ = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for entry in environ { free(entry) } }
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw TestSupportError("Could not start \(arguments[0]): \(String(cString: strerror(result))).")
        }
        return pid
    }

    /// All processes below `root` right now (children before grandchildren).
    public static func descendants(of root: pid_t) -> [pid_t] {
        var children: [pid_t: [pid_t]] = [:]
        for (pid, entry) in entries() { children[entry.parent, default: []].append(pid) }
        var result: [pid_t] = []
        var queue = children[root] ?? []
        while !queue.isEmpty {
            let next = queue.removeFirst()
            result.append(next)
            queue += children[next] ?? []
        }
        return result
    }

    /// The live processes in process group `group` (zombies are dead already).
    public static func members(ofGroup group: pid_t) -> [pid_t] {
        entries().filter { $0.value.group == group && !$0.value.zombie }.map(\.key)
    }

    /// The command line of `pid`, arguments joined by spaces; nil when it is gone.
    public static func commandLine(of pid: pid_t) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        return String(decoding: data, as: UTF8.self).split(separator: "\0").joined(separator: " ")
    }

    /// Every process whose command line contains `text`.
    public static func processes(commandLineContaining text: String) -> [pid_t] {
        entries().keys.filter { commandLine(of: $0)?.contains(text) == true }
    }

    /// The program name of `pid` (`/proc/<pid>/comm`), or nil when it is gone.
    public static func name(of pid: pid_t) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/comm") else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
    }

    /// Parent, process group and zombie state of every process, from the fields of /proc/<pid>/stat after the
    /// parenthesised command name (which may hold spaces).
    private static func entries() -> [pid_t: (parent: pid_t, group: pid_t, zombie: Bool)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [:] }
        var table: [pid_t: (parent: pid_t, group: pid_t, zombie: Bool)] = [:]
        for name in names {
            guard let pid = pid_t(name), let stat = FileManager.default.contents(atPath: "/proc/\(pid)/stat")
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
