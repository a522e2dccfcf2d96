import ArgumentParser
import ClientStateStore
import FleetFiles
import FleetProtocol
import Foundation
import HostAgent
import SystemdUnitFiles

extension FleetClientCommand {
    struct InstallUnits: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "install-units",
            abstract: "Write the systemd units that run fleet-client, for a host without the NixOS module.",
            discussion: """
                Writes fleet-client.service (one run), fleet-client.timer (2 minutes after boot, then every \
                poll_interval_seconds of the client.toml given by --config, plus a random delay), fleet-client-page.socket (127.0.0.1:9999) and \
                fleet-client-page.service (`fleet-client serve`, unprivileged and sandboxed), and the polkit rule \
                that lets the page start fleet-client.service and nothing else (into --polkit-directory; polkitd \
                must be installed for the button to work). Each file is replaced atomically, and only when \
                its text changes; run it again after changing an option. The units match what the NixOS module \
                services.fleet-client declares. Runs that exit 10 applied, 13 unreachable or 14 locked do not mark \
                fleet-client.service failed; 11 failed, 12 refused and 15 rolled back do.
                """)

        @Option(help: ArgumentHelp("Where to write the units.", valueName: "dir"))
        var directory: String = SystemdUnits.defaultDirectory

        @Option(help: ArgumentHelp("Where to write the page's polkit rule.", valueName: "dir"))
        var polkitDirectory: String = SystemdUnits.defaultPolkitDirectory

        @OptionGroup var config: ConfigOption

        /// Gone: the interval is client.toml's poll_interval_seconds, which the host also reports to the server.
        @Option(help: .hidden)
        var interval: String?

        @Option(help: ArgumentHelp("Up to this much random delay before each poll (a time span).", valueName: "span"))
        var randomizedDelay: String = SystemdUnits.defaultRandomizedDelay

        @Option(help: ArgumentHelp("The fleet-client the units run (default: this executable).", valueName: "path"))
        var binary: String?

        @Flag(help: "Print the units instead of writing them.")
        var dryRun = false

        func validate() throws {
            if interval != nil {
                throw ValidationError(
                    "--interval is gone: the timer polls every poll_interval_seconds of client.toml (--config), which "
                        + "the host also reports to the server; `fleet client-config HOST` writes it from fleet.toml")
            }
            for (option, value) in [("--directory", directory), ("--polkit-directory", polkitDirectory)] {
                guard value.hasPrefix("/"), !value.contains("\n") else {
                    throw ValidationError("\(option) \(String(reflecting: value)): must be an absolute path")
                }
            }
        }

        func run() async throws {
            let executable = try binary ?? FileIO.readLink("/proc/self/exe")
            // The timer's interval comes from client.toml. Without a usable one yet, the default (which is also
            // what fleet-client reports when client.toml does not say) until install-units runs again.
            var intervalSeconds = ClientConfiguration.defaultPollIntervalSeconds
            var runTimeoutSeconds: Int?
            do {
                let client = try ClientConfiguration.load(path: config.path)
                intervalSeconds = client.pollIntervalSeconds
                runTimeoutSeconds = client.longestRunSeconds
            } catch {
                printError(
                    "warning: the units read \(config.path), which fleet-client cannot use yet:\n\(error)\n"
                        + "The timer polls every \(SystemdUnits.timeSpan(seconds: intervalSeconds)) (the default) "
                        + "until install-units runs again with a client.toml that says poll_interval_seconds.")
            }
            let units: SystemdUnits
            do {
                if let runTimeoutSeconds {
                    units = try SystemdUnits(
                        binary: executable, configuration: config.path, intervalSeconds: intervalSeconds,
                        randomizedDelay: randomizedDelay, runTimeoutSeconds: runTimeoutSeconds)
                } else {
                    units = try SystemdUnits(
                        binary: executable, configuration: config.path, intervalSeconds: intervalSeconds,
                        randomizedDelay: randomizedDelay)
                }
            } catch {
                // What it refuses are the values of flags (--binary, --config, --randomized-delay): client.toml's
                // poll_interval_seconds was range-checked when it loaded, and the default is in range.
                throw ValidationError(error.description)
            }
            if !FileManager.default.isExecutableFile(atPath: executable) {
                printError("warning: \(executable) is not an executable file (yet); the units will fail until it is")
            }
            if dryRun {
                for (place, unit) in units.units.map({ (directory, $0) }) + [(polkitDirectory, units.pageRule)] {
                    print("==> \(place.hasSuffix("/") ? place : place + "/")\(unit.name) <==")
                    print(unit.text)
                }
                return
            }
            // What stops an install here is this machine (a missing directory, a masked unit, a failed write):
            // exit status 1 with the reason, without the usage line the arguments do not deserve.
            var installed = try units.install(into: directory)
            if (try? FileStatus.following(polkitDirectory))??.kind == .directory {
                installed += try units.installPageRule(into: polkitDirectory)
            } else {
                printError(
                    "warning: \(polkitDirectory) does not exist, so the page's button cannot start runs (it runs "
                        + "unprivileged and asks systemd through polkit): install polkit (apt-get install polkitd) and "
                        + "run install-units again")
            }
            for unit in installed { print("\(unit.status == .written ? "wrote    " : "unchanged") \(unit.path)") }
            if installed.contains(where: { $0.status == .written }) {
                print(
                    "Next: systemctl daemon-reload && systemctl enable --now \(SystemdUnits.timerName) "
                        + SystemdUnits.pageSocketName)
            }
        }
    }
}

/// Writes a line to standard error.
func printError(_ text: String) {
    FileIO.writeToStream(2, text + "\n")
}
