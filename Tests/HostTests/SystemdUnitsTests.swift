import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import HostAgent
import SystemdUnitFiles
import Testing

/// `fleet-client install-units`: the units a host without NixOS runs, written by the real executable and
/// checked by systemd's own parser (`systemd-analyze verify`, which works offline, without a running systemd).
@Suite("fleet-client install-units")
struct SystemdUnitsTests {
    static let systemdAnalyze = "/usr/bin/systemd-analyze"
    static let unitNames = [
        SystemdUnits.serviceName, SystemdUnits.pageServiceName, SystemdUnits.timerName, SystemdUnits.pageSocketName,
    ]

    /// `fleet-client install-units`, with polkit's rule going to `polkitDirectory` (by default one that does not
    /// exist, so that no test writes into this machine's /etc/polkit-1); a `--polkit-directory` in `arguments`
    /// comes later and wins.
    static func installUnits(
        _ arguments: [String], polkitDirectory: String = "/nonexistent/fleet-test-polkit"
    ) async throws -> CommandOutput {
        try await Command.run(
            FleetFixture.executable("fleet-client"),
            ["install-units", "--polkit-directory=\(polkitDirectory)"] + arguments)
    }

    /// `systemd-analyze security --offline=true` of a unit file: its overall exposure (0 safe … 10 unsafe).
    static func exposure(of path: String) async throws -> Double {
        let result = try await Command.run(systemdAnalyze, ["security", "--offline=true", path])
        let text = result.standardOutput + result.standardError
        guard let line = text.split(separator: "\n").first(where: { $0.contains("Overall exposure level") }),
            let value = line.split(separator: ":").last?.split(separator: " ").first.flatMap({ Double($0) })
        else { throw TestSupportError("no exposure level in:\n\(text)") }
        return value
    }

    /// A client.toml that polls every `seconds`, as `fleet client-config` writes it.
    static func clientTOML(pollIntervalSeconds seconds: Int) throws -> String {
        ClientConfiguration(
            host: try HostName("alpha"),
            server: .init(
                address: "fleet.example.org", user: "fleet-alpha",
                hostKey: try SSHPublicKey(ClientConfigurationTests.hostKey)),
            fleetPublicKey: try VerifyingKey(nixFormat: try ClientConfigurationTests.fleetKey()),
            pollIntervalSeconds: seconds
        ).rendered()
    }

    /// Runs `systemd-analyze verify` on unit files; its output, both streams.
    static func verify(_ paths: [String]) async throws -> (status: Int32, output: String) {
        let result = try await Command.run(systemdAnalyze, ["verify"] + paths)
        return (result.exitCode, result.standardOutput + result.standardError)
    }

    @Test func unitsWrittenByInstallUnitsPassSystemdAnalyzeVerify() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try directory.writeFile("client.toml", text: try Self.clientTOML(pollIntervalSeconds: 5400))
        try directory.makeDirectory("polkit", mode: 0o755)
        let output = try await Self.installUnits(
            [
                "--directory", directory.path, "--config", directory.path("client.toml"),
                "--randomized-delay", "0", "--binary", FleetFixture.executable("fleet-client"),
            ], polkitDirectory: directory.path("polkit"))
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(!output.standardError.contains("warning"), "\(output.standardError)")
        let rule = try String(contentsOfFile: directory.path("polkit/\(SystemdUnits.pageRuleName)"), encoding: .utf8)
        #expect(rule == (try SystemdUnits(binary: "/x", configuration: "/y")).pageRule.text)
        let paths = Self.unitNames.map { directory.path($0) }
        let verified = try await Self.verify(paths)
        #expect(verified.status == 0, "systemd-analyze verify exited \(verified.status):\n\(verified.output)")
        let complaints = verified.output.split(separator: "\n").filter {
            $0.contains(directory.path) || $0.contains("fleet-client")
        }
        #expect(complaints.isEmpty, "systemd-analyze verify warns about the units:\n\(verified.output)")

        // The check can fail: the same units with a directive systemd does not know, a bad time span and a
        // missing executable are all reported.
        let broken = directory.path("broken")
        try directory.makeDirectory("broken", mode: 0o700)
        for (name, path) in zip(Self.unitNames, paths) {
            var text = try String(contentsOfFile: path, encoding: .utf8)
            text = text.replacingOccurrences(of: "OnUnitActiveSec=90min", with: "OnUnitActiveSec=15 potatoes")
                .replacingOccurrences(of: "Type=oneshot", with: "Type=oneshot\nBogusDirective=1")
                .replacingOccurrences(of: FleetFixture.executable("fleet-client"), with: "/nonexistent/fleet-client")
            try directory.writeFile("broken/\(name)", text: text)
        }
        let failed = try await Self.verify(Self.unitNames.map { broken + "/" + $0 })
        #expect(failed.status != 0)
        for expected in ["BogusDirective", "15 potatoes", "/nonexistent/fleet-client"] {
            #expect(failed.output.contains(expected), "systemd-analyze verify missed \(expected):\n\(failed.output)")
        }

        // The page is sandboxed: systemd rates it at most 2.0 (it was 9.6 UNSAFE as root without a sandbox, which
        // is what the check says of the same unit without its sandbox lines).
        let page = directory.path(SystemdUnits.pageServiceName)
        let rated = try await Self.exposure(of: page)
        #expect(rated <= 2.0, "systemd-analyze security rates the page \(rated)")
        let bare = try String(contentsOfFile: page, encoding: .utf8).split(separator: "\n").filter { line in
            !SystemdUnits.pageSandbox.contains(String(line))
        }
        try directory.writeFile("broken/bare.service", text: bare.joined(separator: "\n") + "\n")
        let bareRated = try await Self.exposure(of: broken + "/bare.service")
        #expect(bareRated > 9.0, "the unsandboxed page is rated \(bareRated)")
    }

    @Test func theUnitsSayWhatTheyMustAndNothingElse() throws {
        let units = try SystemdUnits(
            binary: "/usr/local/bin/fleet-client", configuration: "/etc/fleet/client.toml")
        let text = Dictionary(uniqueKeysWithValues: units.units.map { ($0.name, $0.text) })
        let service = try #require(text[SystemdUnits.serviceName])
        #expect(service.contains("\nType=oneshot\n"))
        #expect(service.contains("\nExecStart=/usr/local/bin/fleet-client run --config /etc/fleet/client.toml\n"))
        // Applied, unreachable and locked are not failures; failed, refused and rolled back are.
        #expect(service.contains("\nSuccessExitStatus=10 13 14\n"))
        #expect(SystemdUnits.successExitStatuses == [RunOutcome.applied, .unreachable, .locked].map(\.exitStatus))
        for outcome in [RunOutcome.failed, .refused, .rolledBack] {
            #expect(!SystemdUnits.successExitStatuses.contains(outcome.exitStatus))
        }
        let timer = try #require(text[SystemdUnits.timerName])
        for line in ["OnBootSec=2min", "OnUnitActiveSec=15min", "RandomizedDelaySec=5min", "WantedBy=timers.target"] {
            #expect(timer.contains("\n\(line)\n"), "\(line) missing from\n\(timer)")
        }
        let socket = try #require(text[SystemdUnits.pageSocketName])
        #expect(socket.contains("\nListenStream=127.0.0.1:9999\n") && socket.contains("\nAccept=no\n"))
        #expect(socket.split(separator: "\n").filter { $0.hasPrefix("Listen") }.count == 1, "loopback only")
        let page = try #require(text[SystemdUnits.pageServiceName])
        #expect(page.contains("\nExecStart=/usr/local/bin/fleet-client serve --config /etc/fleet/client.toml\n"))
        #expect(page.contains("\nRequires=fleet-client-page.socket\n"))
        // Unprivileged: it runs no activation (a press starts fleet-client.service), so stopping it is harmless.
        for line in ["DynamicUser=yes", "User=fleet-client-page", "CapabilityBoundingSet=", "PrivateNetwork=yes"] {
            #expect(page.contains("\n\(line)\n"), "\(line) missing from\n\(page)")
        }
        #expect(!page.contains("KillMode="))
        #expect(service.contains("\nEnvironmentFile=-/etc/default/fleet-client\n"), "proxy variables")
        // polkit lets that user start that unit, and nothing else.
        let rule = units.pageRule.text
        for condition in [
            "action.id == \"org.freedesktop.systemd1.manage-units\"",
            "action.lookup(\"unit\") == \"fleet-client.service\"",
            "action.lookup(\"verb\") == \"start\"", "subject.user == \"fleet-client-page\"",
        ] {
            #expect(rule.contains(condition), "\(condition) missing from\n\(rule)")
        }
        #expect(rule.components(separatedBy: "polkit.Result.YES").count == 2 && !rule.contains("Result.AUTH"))
    }

    @Test func installingAgainChangesOnlyWhatDiffers() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let arguments = ["--directory", directory.path, "--config", directory.path("client.toml")]
        var output = try await Self.installUnits(arguments)
        #expect(output.standardError.contains("/nonexistent/fleet-test-polkit does not exist, so the page's button"))
        #expect(output.exitCode == 0, "\(output.standardError)")
        for name in Self.unitNames {
            #expect(output.standardOutput.contains("wrote     \(directory.path(name))\n"), "\(output.standardOutput)")
        }
        #expect(output.standardOutput.contains("systemctl daemon-reload"))
        // The configuration does not exist yet: a warning, not a refusal.
        #expect(output.standardError.contains("warning: the units read \(directory.path("client.toml"))"))

        func statuses() throws -> [FileStatus?] { try Self.unitNames.map { try FileStatus.of(directory.path($0)) } }
        let before = try statuses()
        #expect(before.allSatisfy { $0?.kind == .regular && $0?.permissions == 0o644 })
        output = try await Self.installUnits(arguments)
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.split(separator: "\n").filter { $0.hasPrefix("unchanged ") }.count == 4)
        #expect(!output.standardOutput.contains("wrote") && !output.standardOutput.contains("daemon-reload"))
        #expect(try statuses() == before, "an unchanged unit was rewritten")

        // A new interval in client.toml rewrites the timer only; a hand edit and a wrong mode are put right.
        try directory.writeFile("client.toml", text: try Self.clientTOML(pollIntervalSeconds: 3600))
        try directory.writeFile(SystemdUnits.pageServiceName, text: "edited by hand\n")
        _ = chmod(directory.path(SystemdUnits.serviceName), 0o600)
        output = try await Self.installUnits(arguments)
        #expect(output.exitCode == 0, "\(output.standardError)")
        for name in Self.unitNames {
            let expected = name == SystemdUnits.pageSocketName ? "unchanged" : "wrote    "
            #expect(output.standardOutput.contains("\(expected) \(directory.path(name))\n"), "\(output.standardOutput)")
        }
        let timer = try String(contentsOfFile: directory.path(SystemdUnits.timerName), encoding: .utf8)
        #expect(timer.contains("\nOnUnitActiveSec=1h\n"))
        #expect(try FileStatus.of(directory.path(SystemdUnits.serviceName))?.permissions == 0o644)
        // Nothing but the units (and the client.toml written here) is left behind.
        #expect(try FileIO.listDirectory(directory.path).sorted() == (Self.unitNames + ["client.toml"]).sorted())

        // The polkit rule is installed the same way, once its directory exists.
        output = try await Self.installUnits(arguments, polkitDirectory: directory.path)
        #expect(output.standardOutput.contains("wrote     \(directory.path(SystemdUnits.pageRuleName))\n"))
        output = try await Self.installUnits(arguments, polkitDirectory: directory.path)
        #expect(output.standardOutput.contains("unchanged \(directory.path(SystemdUnits.pageRuleName))\n"))
        #expect(try FileStatus.of(directory.path(SystemdUnits.pageRuleName))?.permissions == 0o644)
    }

    @Test func dryRunPrintsTheUnitsAndWritesNothing() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let output = try await Self.installUnits(["--directory", directory.path, "--dry-run", "--binary", "/bin/true"])
        #expect(output.exitCode == 0, "\(output.standardError)")
        for name in Self.unitNames { #expect(output.standardOutput.contains("==> \(directory.path(name)) <==")) }
        #expect(output.standardOutput.contains("==> /nonexistent/fleet-test-polkit/\(SystemdUnits.pageRuleName) <=="))
        #expect(output.standardOutput.contains("ExecStart=/bin/true run --config /etc/fleet/client.toml"))
        #expect(try FileIO.listDirectory(directory.path).isEmpty)
    }

    @Test func hostileInputsAreRefusedAndNothingIsWritten() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let config = directory.path("client.toml")
        let cases: [(option: String, value: String, expected: String)] = [
            ("--directory", "units", "--directory \"units\": must be an absolute path"),
            ("--polkit-directory", "rules.d", "--polkit-directory \"rules.d\": must be an absolute path"),
            ("--config", "client.toml", "--config \"client.toml\": must be an absolute path"),
            ("--binary", "bin/fleet-client", "--binary \"bin/fleet-client\": must be an absolute path"),
            // A newline would start a directive of its own in the unit file.
            ("--config", "/etc/fleet/client.toml\nExecStartPre=/bin/sh -c evil", "--config"),
            ("--binary", "/usr/bin/fleet-client\n[Service]\nUser=root", "--binary"),
            // Spaces, quotes, % specifiers and $ variables mean something to systemd: refused, not escaped.
            ("--binary", "/opt/my fleet/fleet-client", "may only contain"),
            ("--config", "/etc/fleet/%n.toml", "may only contain"),
            ("--config", "/etc/fleet/$HOME.toml", "may only contain"),
            ("--config", "/etc/fleet/", "must name a file"),
            // The interval is client.toml's poll_interval_seconds, nothing else.
            ("--interval", "1h", "--interval is gone: the timer polls every poll_interval_seconds of client.toml"),
            ("--randomized-delay", "5min\n[Install]\nWantedBy=multi-user.target", "not a systemd time span"),
            ("--randomized-delay", "5secs", "not a systemd time span"),
        ]
        for (option, value, expected) in cases {
            // --option=value, so that a value starting with "-" is a value.
            var arguments = ["--directory": directory.path, "--config": config]
            arguments[option] = value
            let output = try await Self.installUnits(arguments.sorted { $0.key < $1.key }.map { "\($0)=\($1)" })
            let shown = "\(option) \(String(reflecting: value))"
            #expect(output.exitCode != 0, "accepted \(shown)")
            #expect(output.standardError.contains(expected), "\(shown): \(output.standardError)")
            #expect(try FileIO.listDirectory(directory.path).isEmpty, "\(shown) wrote into the directory")
        }

        // A missing directory is not created, and a masked unit (a link to /dev/null) is left alone.
        var output = try await Self.installUnits(["--directory", directory.path("missing"), "--config", config])
        #expect(output.exitCode != 0 && output.standardError.contains("no such directory"), "\(output.standardError)")
        guard symlink("/dev/null", directory.path(SystemdUnits.timerName)) == 0 else {
            throw TestSupportError("symlink failed")
        }
        output = try await Self.installUnits(["--directory", directory.path, "--config", config])
        #expect(output.exitCode != 0 && output.standardError.contains("masked"), "\(output.standardError)")
        #expect(try FileIO.listDirectory(directory.path) == [SystemdUnits.timerName])
        #expect(try FileIO.readLink(directory.path(SystemdUnits.timerName)) == "/dev/null")
    }

    @Test func timeSpansAreReadAsSystemdReadsThem() async throws {
        let accepted = [
            "15min", "1h", "1h 30min", "1h30min", "90", "1.5h", " 5 min ", "2 weeks", "1M", "1y", "55s500ms", "1 hr",
            "10seconds", "3 days", "250ms", "0",
        ]
        for text in accepted {
            let seconds = try #require(SystemdUnits.seconds(ofTimeSpan: text), "refused \(String(reflecting: text))")
            let output = try await Command.run(Self.systemdAnalyze, ["timespan", text])
            #expect(output.exitCode == 0, "systemd refuses \(String(reflecting: text)): \(output.standardError)")
            let microseconds = output.standardOutput.split(separator: "\n").map { String($0).trimmingWhitespace() }
                .first { $0.hasPrefix("μs:") }
                .flatMap { Double(String($0.dropFirst(3)).trimmingWhitespace()) }
            #expect(microseconds == (seconds * 1_000_000).rounded(), "\(text): systemd says \(output.standardOutput)")
        }
        for text in ["", " ", "min", "15 potatoes", "5secs", "5mo", "1.h", ".5h", "-1h", "infinity", "1h\n", "1e3s"] {
            #expect(SystemdUnits.seconds(ofTimeSpan: text) == nil, "accepted \(String(reflecting: text))")
        }
    }
}
