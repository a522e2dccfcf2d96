import Foundation
import Glibc
import Synchronization

/// A real `/usr/sbin/sshd` on 127.0.0.1 and a free port, for one test. Call ``stop()`` in a `defer`.
///
/// The caller writes the policy (the config *body*); this adds `ListenAddress`, `HostKey` and `PidFile`
/// in front, with fresh host keys in a private temporary directory, starts `sshd -D -e -f <config>` as a
/// child process with its log in that directory, and waits until it listens.
public final class TestSSHD: Sendable {
    public let port: Int
    public let pid: Int32
    /// The `.pub` line of the first host key, for pinning.
    public let hostPublicKey: String
    /// Every host key's `.pub` line, in the order of `hostKeyTypes`.
    public let hostPublicKeys: [String]
    public let configPath: String
    public let logPath: String
    private let directory: TestDirectory
    private let isStopped = Mutex(false)

    private init(
        port: Int, pid: pid_t, hostPublicKeys: [String], directory: TestDirectory, configPath: String,
        logPath: String
    ) {
        self.port = port
        self.pid = pid
        self.hostPublicKey = hostPublicKeys[0]
        self.hostPublicKeys = hostPublicKeys
        self.directory = directory
        self.configPath = configPath
        self.logPath = logPath
    }

    /// Starts sshd with `configBody`, retrying on another port when the chosen one was taken meanwhile.
    ///
    /// - Parameters:
    ///   - hostKeyTypes: `ssh-keygen -t` types of the host keys to generate, in `HostKey` order.
    ///   - readyTimeout: how long sshd may take to listen before this gives up and stops it.
    /// - Throws: when sshd exits or does not listen in time; the message includes its log.
    public static func start(
        configBody: String, hostKeyTypes: [String] = ["ed25519"], readyTimeout: Duration = .seconds(10)
    ) throws -> TestSSHD {
        try ensurePrivilegeSeparationDirectory()
        let directory = try TestDirectory.makeTemporary()
        do {
            let keys = try hostKeyTypes.map { type in
                try KeyPair.generate(
                    at: directory.path("ssh_host_\(type)_key"), comment: "fleet-test-host", type: type)
            }
            var lastLog = ""
            for _ in 0..<8 {
                let port = try LoopbackPort.free()
                let configPath = directory.path("sshd_config")
                try directory.writeFile(
                    "sshd_config", text: header(port: port, keys: keys, directory: directory) + configBody, mode: 0o600)
                let logPath = directory.path("sshd.log")
                unlink(logPath)  // each attempt gets its own log
                let pid = try ProcessTable.spawn(["/usr/sbin/sshd", "-D", "-e", "-f", configPath], logPath: logPath)
                let sshd = TestSSHD(
                    port: port, pid: pid, hostPublicKeys: keys.map(\.publicKeyLine), directory: directory,
                    configPath: configPath, logPath: logPath)
                switch sshd.waitUntilListening(timeout: readyTimeout) {
                case .listening:
                    return sshd
                case .exited(let log) where log.contains("Address already in use"):
                    lastLog = log
                    continue
                case .exited(let log):
                    // Already reaped: its PID may belong to someone else now, so it is not signalled.
                    throw TestSupportError("sshd exited on start (127.0.0.1:\(port)). Its log:\n\(log)")
                case .timedOut(let log):
                    sshd.terminate()
                    throw TestSupportError("sshd did not listen on 127.0.0.1:\(port) in time. Its log:\n\(log)")
                }
            }
            throw TestSupportError("sshd found no free port after 8 attempts. Its last log:\n\(lastLog)")
        } catch {
            directory.remove()
            throw error
        }
    }

    /// Runs `sshd -t` on `configBody` (with the same added lines) and returns its complaint, or nil if valid.
    public static func validate(configBody: String) throws -> String? {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let key = try KeyPair.generate(at: directory.path("ssh_host_ed25519_key"))
        try directory.writeFile(
            "sshd_config", text: header(port: 22, keys: [key], directory: directory) + configBody, mode: 0o600)
        let output = try TestCommand.run("/usr/sbin/sshd", ["-t", "-f", directory.path("sshd_config")])
        return output.succeeded ? nil : output.standardError + output.standardOutput
    }

    /// Everything sshd has logged so far (it runs with `-e`, so this includes per-connection messages).
    public func logText() -> String {
        guard let data = FileManager.default.contents(atPath: logPath) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The PIDs of sshd's per-connection processes (all descendants of ``pid``).
    public func sessionProcessIDs() -> [Int32] {
        ProcessTable.descendants(of: pid)
    }

    /// Stops this sshd and its session processes (by PID only), then deletes its directory and log.
    ///
    /// SIGTERM first, SIGKILL after five seconds; idempotent and never throws, so it is safe in `defer`.
    public func stop() {
        let wasStopped = isStopped.withLock { stopped in
            defer { stopped = true }
            return stopped
        }
        guard !wasStopped else { return }
        terminate()
        directory.remove()
    }

    private func terminate() {
        let sessions = ProcessTable.descendants(of: pid)
        kill(pid, SIGTERM)
        kill(pid, SIGCONT)  // a test may have stopped it to cut the network
        for session in sessions {
            kill(session, SIGTERM)
            kill(session, SIGCONT)  // a test may have stopped it to simulate a hung server
        }
        let deadline = ContinuousClock.now + .seconds(5)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                break
            }
            usleep(10_000)
        }
        for session in sessions where Self.isSSHD(session) {
            kill(session, SIGKILL)
        }
    }

    // MARK: Starting

    private enum Readiness {
        case listening
        case exited(log: String)
        case timedOut(log: String)
    }

    /// Waits for "Server listening" in the log, or (for configs that log less) for the port to accept.
    private func waitUntilListening(timeout: Duration) -> Readiness {
        let started = ContinuousClock.now
        let announcement = "Server listening on 127.0.0.1 port \(port)."
        while true {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { return .exited(log: logText()) }
            if logText().contains(announcement) { return .listening }
            let elapsed = ContinuousClock.now - started
            if elapsed > .seconds(2), LoopbackPort.isAccepting(port) { return .listening }
            if elapsed > timeout { return .timedOut(log: logText()) }
            usleep(10_000)
        }
    }

    private static func header(port: Int, keys: [KeyPair], directory: TestDirectory) -> String {
        var lines = ["# Added by TestSSHD.", "ListenAddress 127.0.0.1:\(port)"]
        lines += keys.map { "HostKey \($0.privateKeyPath)" }
        lines += ["PidFile \(directory.path("sshd.pid"))", "# The test's configuration.", ""]
        return lines.joined(separator: "\n")
    }

    /// Debian's sshd refuses to start without its privilege separation directory (normally made by systemd).
    private static func ensurePrivilegeSeparationDirectory() throws {
        if mkdir("/run/sshd", 0o755) != 0, errno != EEXIST {
            throw TestSupportError("Could not create /run/sshd: \(String(cString: strerror(errno))).")
        }
    }

    private static func isSSHD(_ pid: pid_t) -> Bool {
        ProcessTable.name(of: pid)?.hasPrefix("sshd") == true
    }
}
