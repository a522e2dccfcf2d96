import Foundation
import TOMLKit

extension ClientConfiguration {
    /// `[rollback]`: how long a switched generation has to prove itself before it is undone.
    public struct Rollback: Sendable, Equatable {
        /// The window after activation in which the server must be reached again and the health checks pass.
        public var confirmTimeoutSeconds: Int
        /// Attempts spread over the window, so a short outage inside it causes no rollback.
        public var confirmAttempts: Int

        public init(confirmTimeoutSeconds: Int = 90, confirmAttempts: Int = 3) {
            self.confirmTimeoutSeconds = confirmTimeoutSeconds
            self.confirmAttempts = confirmAttempts
        }
    }

    /// `[[health_checks]]`: a command that must exit 0 within its timeout for a new generation to be kept.
    ///
    /// The command is an argument list run without a shell, so nothing in it is interpreted.
    public struct HealthCheck: Sendable, Equatable {
        public var name: String
        public var command: [String]
        public var timeoutSeconds: Int

        public init(name: String, command: [String], timeoutSeconds: Int = 30) {
            self.name = name
            self.command = command
            self.timeoutSeconds = timeoutSeconds
        }
    }

    /// `[reboot]`: whether, and when, the client reboots a machine whose new generation needs it.
    public struct Reboot: Sendable, Equatable {
        public enum Policy: String, Sendable, Equatable, CaseIterable {
            /// Report that a reboot is needed; never reboot.
            case never
            /// Reboot when a run finds a reboot needed and the local time is inside the window.
            case window
        }

        public var policy: Policy
        public var window: RebootWindow?
        /// Run without a shell once the report is uploaded.
        public var command: [String]
        /// Where NixOS links the booted and the running system (other paths only for tests).
        public var bootedSystem: String
        public var currentSystem: String

        public init(
            policy: Policy = .never, window: RebootWindow? = nil, command: [String] = ["systemctl", "reboot"],
            bootedSystem: String = "/run/booted-system", currentSystem: String = "/run/current-system"
        ) {
            self.policy = policy
            self.window = window
            self.command = command
            self.bootedSystem = bootedSystem
            self.currentSystem = currentSystem
        }
    }

    static let rollbackKeys = ["confirm_timeout_seconds", "confirm_attempts"]
    static let healthCheckKeys = ["name", "command", "timeout_seconds"]
    static let rebootKeys = ["policy", "window", "command", "booted_system", "current_system"]

    static func parseRollback(_ table: TOMLTable?, _ reader: inout TOMLReader) -> Rollback {
        guard let table else { return Rollback() }
        reader.checkKeys(table, allowed: rollbackKeys, in: "[rollback]")
        let timeout = reader.integer(table, "confirm_timeout_seconds", in: "[rollback]", range: 5...3600) ?? 90
        let attempts = reader.integer(table, "confirm_attempts", in: "[rollback]", range: 1...100) ?? 3
        return Rollback(confirmTimeoutSeconds: timeout, confirmAttempts: attempts)
    }

    static func parseHealthChecks(_ value: (any TOMLValueConvertible)?, _ reader: inout TOMLReader) -> [HealthCheck] {
        guard let value else { return [] }
        guard let array = value.array else {
            reader.problem(
                "\"health_checks\" must be an array of tables: [[health_checks]] with name, command, timeout_seconds")
            return []
        }
        var checks: [HealthCheck] = []
        for (index, context, table) in reader.tables(of: array, named: "[[health_checks]]") {
            reader.checkKeys(table, allowed: healthCheckKeys, in: context)
            let name = reader.string(table, "name", in: context) ?? "check \(index + 1)"
            let command = reader.command(table, in: context)
            let timeout = reader.integer(table, "timeout_seconds", in: context, range: 1...3600) ?? 30
            if let command { checks.append(HealthCheck(name: name, command: command, timeoutSeconds: timeout)) }
        }
        return checks
    }

    static func parseReboot(_ table: TOMLTable?, _ reader: inout TOMLReader) -> Reboot {
        guard let table else { return Reboot() }
        reader.checkKeys(table, allowed: rebootKeys, in: "[reboot]")
        var reboot = Reboot()
        if let text = reader.string(table, "policy", in: "[reboot]") {
            if let policy = Reboot.Policy(rawValue: text) {
                reboot.policy = policy
            } else {
                reader.problem("[reboot] key \"policy\": \(quoted(text)) is not one of never, window")
            }
        }
        if let text = reader.string(table, "window", in: "[reboot]") {
            do { reboot.window = try RebootWindow(text) } catch { reader.problem("[reboot] key \"window\": \(error)") }
        }
        if reboot.policy == .window && reboot.window == nil && table["window"] == nil {
            reader.problem("[reboot]: policy \"window\" needs a window, e.g. window = \"02:00-04:00\"")
        }
        if let command = reader.stringArray(table, "command", in: "[reboot]") {
            if command.isEmpty {
                reader.problem("[reboot] key \"command\": must name a program")
            } else {
                reboot.command = command
            }
        }
        for (key, keyPath) in [("booted_system", \Reboot.bootedSystem), ("current_system", \Reboot.currentSystem)] {
            if let path = reader.absolutePath(table, key, in: "[reboot]") { reboot[keyPath: keyPath] = path }
        }
        return reboot
    }

    func renderedSafety() -> [String] {
        var lines = [
            "",
            "# After a switch, the server must be reached again and the health checks pass within this window,",
            "# or the previous generation is restored (magic rollback).",
            "[rollback]",
            "confirm_timeout_seconds = \(rollback.confirmTimeoutSeconds)",
            "confirm_attempts = \(rollback.confirmAttempts)",
        ]
        if healthChecks.isEmpty {
            lines += [
                "",
                "# [[health_checks]]",
                "# name = \"web\"",
                "# command = [\"/run/current-system/sw/bin/curl\", \"-fsS\", \"http://127.0.0.1/\"]",
                "# timeout_seconds = 10",
            ]
        }
        for check in healthChecks {
            lines += [
                "", "[[health_checks]]", "name = \(tomlString(check.name))",
                "command = [\(check.command.map(tomlString).joined(separator: ", "))]",
                "timeout_seconds = \(check.timeoutSeconds)",
            ]
        }
        lines += [
            "", "# Reboot policy: \"never\" (report only) or \"window\" (reboot inside window, local time).",
            "[reboot]",
        ]
        lines.append("policy = \(tomlString(reboot.policy.rawValue))")
        if let window = reboot.window {
            lines.append("window = \(tomlString(window.description))")
        } else {
            lines.append("# window = \"02:00-04:00\"")
        }
        lines.append("command = [\(reboot.command.map(tomlString).joined(separator: ", "))]")
        if reboot.bootedSystem != Reboot().bootedSystem {
            lines.append("booted_system = \(tomlString(reboot.bootedSystem))")
        }
        if reboot.currentSystem != Reboot().currentSystem {
            lines.append("current_system = \(tomlString(reboot.currentSystem))")
        }
        return lines
    }
}

/// A daily time window `HH:MM-HH:MM` in local time; it may cross midnight (`22:00-02:00`).
public struct RebootWindow: Sendable, Equatable, CustomStringConvertible {
    /// Minutes after midnight; the window holds `start` and ends just before `end`.
    public let start: Int
    public let end: Int

    public init(_ text: String) throws(ProtocolError) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let start = Self.minutes(parts[0]), let end = Self.minutes(parts[1]) else {
            throw .malformedKey("\(quoted(text)) is not a window \"HH:MM-HH:MM\" (24-hour clock, e.g. \"02:00-04:30\")")
        }
        guard start != end else { throw .malformedKey("\(quoted(text)) is empty: start and end are the same time") }
        self.start = start
        self.end = end
    }

    private static func minutes(_ text: Substring) -> Int? {
        let fields = text.split(separator: ":", omittingEmptySubsequences: false)
        guard fields.count == 2, fields.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isASCII) }),
            let hours = Int(fields[0]), let minutes = Int(fields[1]), (0..<24).contains(hours),
            (0..<60).contains(minutes)
        else { return nil }
        return hours * 60 + minutes
    }

    /// Whether a time of day (minutes after midnight) falls inside the window.
    public func contains(minuteOfDay minute: Int) -> Bool {
        start < end ? (start <= minute && minute < end) : (minute >= start || minute < end)
    }

    public var description: String {
        String(format: "%02d:%02d-%02d:%02d", start / 60, start % 60, end / 60, end % 60)
    }
}
