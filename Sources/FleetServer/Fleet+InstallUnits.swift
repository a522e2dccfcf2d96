import ArgumentParser
import FleetFiles
import Foundation
import Inventory
import ServerSetup
import SystemdUnitFiles

extension Fleet {
    struct InstallUnits: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "install-units",
            abstract: "Write the systemd units of a fleet server without the NixOS module (Debian).",
            discussion: """
                Writes fleet-sshd.service (the dedicated sshd: its host key made when missing, `sshd -t`, then \
                `sshd -D -f` with the configuration `fleet sshd-config` wrote to --sshd-config), \
                fleet-publish.service (`fleet setup`, then `fleet publish`), fleet-publish.timer with \
                --publish-every, and fleet-review.service + fleet-review.timer (`fleet review --metrics-file`, \
                every --review-every), which fires the hooks' host events without anyone running `fleet status`, and \
                with --update-every fleet-update.service + fleet-update.timer (`fleet update --commit --policy \
                <--update-policy>`, docs/updates.md). \
                Each file is replaced atomically, and only when its text changes; run it again after changing an \
                option. docs/server-units.md has the whole setup.
                """)

        @OptionGroup var global: GlobalOptions

        @Option(help: ArgumentHelp("Where to write the units.", valueName: "dir"))
        var directory: String = ServerUnits.defaultDirectory

        @Option(help: ArgumentHelp("The fleet the units run (default: this executable).", valueName: "path"))
        var binary: String?

        @Option(
            help: ArgumentHelp(
                "The dedicated sshd's configuration, as `fleet sshd-config` writes it.", valueName: "file"))
        var sshdConfig: String = ServerUnits.defaultSSHDConfiguration

        @Flag(help: "No fleet-sshd.service: the system sshd serves the chroots (`fleet sshd-config --match-only`).")
        var withoutSSHD = false

        @Option(
            help: ArgumentHelp(
                "The host key that configuration names, made when missing (ed25519).", valueName: "file"))
        var hostPrivateKey: String = ServerUnits.defaultHostKey

        @Option(help: ArgumentHelp("The sshd executable.", valueName: "path"))
        var sshd: String = "/usr/sbin/sshd"

        @Option(help: ArgumentHelp("The ssh-keygen executable.", valueName: "path"))
        var sshKeygen: String = "/usr/bin/ssh-keygen"

        @Option(
            help: ArgumentHelp(
                "Where fleet review writes the metrics (default: <state_dir>/fleet.prom).", valueName: "file"))
        var metricsFile: String?

        @Option(
            help: ArgumentHelp(
                "Also publish every this long (a time span, e.g. 10min); without it no fleet-publish.timer.",
                valueName: "span"))
        var publishEvery: String?

        @Option(help: ArgumentHelp("Review the hosts every this long (a time span).", valueName: "span"))
        var reviewEvery: String = ServerUnits.defaultReviewEvery

        @Option(
            help: ArgumentHelp(
                "Also update the flake inputs every this long (a time span, e.g. 1d); without it no fleet-update.timer.",
                valueName: "span"))
        var updateEvery: String?

        @Option(help: ArgumentHelp("The timer's `fleet update --policy`: all or per-host.", valueName: "policy"))
        var updatePolicy: String = "all"

        @Flag(help: "Print the units instead of writing them.")
        var dryRun = false

        func validate() throws {
            guard directory.hasPrefix("/"), !directory.contains("\n") else {
                throw ValidationError("--directory \(String(reflecting: directory)): must be an absolute path")
            }
        }

        func run() async throws {
            // Loaded for the state directory (the metrics file's default), and so that a fleet.toml that does
            // not load stops the install instead of every later start of the units.
            let configuration = try global.loadConfiguration()
            let environment = ProcessInfo.processInfo.environment
            func chosen(_ flag: String?, _ variable: String) -> String? {
                (flag ?? environment[variable].flatMap { $0.isEmpty ? nil : $0 }).map(FileIO.absolute)
            }
            let executable = try binary ?? FileIO.readLink("/proc/self/exe")
            let units: ServerUnits
            do {
                units = try ServerUnits(
                    .init(
                        binary: executable,
                        repository: FileIO.absolute(global.repo),
                        chrootRoot: chosen(global.chrootRoot, "FLEET_CHROOT_ROOT"),
                        stateDirectory: chosen(global.stateDir, "FLEET_STATE_DIR"),
                        sshdConfiguration: withoutSSHD ? nil : FileIO.absolute(sshdConfig),
                        hostKey: FileIO.absolute(hostPrivateKey), sshd: sshd, sshKeygen: sshKeygen,
                        metricsFile: metricsFile.map(FileIO.absolute)
                            ?? configuration.server.stateDirectory + "/fleet.prom",
                        publishEvery: publishEvery, reviewEvery: reviewEvery, updateEvery: updateEvery,
                        updatePolicy: updatePolicy))
            } catch {
                // What it refuses are the values of flags, each named.
                throw ValidationError(error.description)
            }
            if dryRun {
                for unit in units.units {
                    print("==> \(directory.hasSuffix("/") ? directory : directory + "/")\(unit.name) <==")
                    print(unit.text)
                }
                return
            }
            let installed = try units.install(into: directory)
            for unit in installed { print("\(unit.status == .written ? "wrote    " : "unchanged") \(unit.path)") }
            let staleTimer = (directory.hasSuffix("/") ? directory : directory + "/") + ServerUnits.publishTimerName
            if publishEvery == nil, (try? FileStatus.of(staleTimer)) != nil {
                printError(
                    "note: \(staleTimer) is left from an earlier install with --publish-every; remove it "
                        + "(systemctl disable --now \(ServerUnits.publishTimerName)) or give --publish-every again")
            }
            let staleUpdateTimer =
                (directory.hasSuffix("/") ? directory : directory + "/") + ServerUnits.updateTimerName
            if updateEvery == nil, (try? FileStatus.of(staleUpdateTimer)) != nil {
                printError(
                    "note: \(staleUpdateTimer) is left from an earlier install with --update-every; remove it "
                        + "(systemctl disable --now \(ServerUnits.updateTimerName)) or give --update-every again")
            }
            if installed.contains(where: { $0.status == .written }) {
                print(
                    "Next: systemctl daemon-reload && systemctl enable --now \(units.enabledUnits.joined(separator: " "))"
                )
            }
        }
    }
}
