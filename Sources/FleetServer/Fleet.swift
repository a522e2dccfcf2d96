import ArgumentParser
import FleetProtocol

/// `fleet`: the server side of a pull-based NixOS fleet.
@main
struct Fleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Publish each host's NixOS configuration into its own SFTP chroot.",
        discussion: """
            Every command reads fleet.toml from --repo (default: the current directory). The chroot root and \
            state directory come from --chroot-root/--state-dir, else FLEET_CHROOT_ROOT/FLEET_STATE_DIR, else fleet.toml.
            """,
        // `fleet --version`: the version and the commit it was built from (SourceCommitPlugin).
        version: FleetVersion.versionLine(program: "fleet", commit: SourceCommit.value),
        subcommands: [
            Init.self, Hosts.self, Build.self, Publish.self, Update.self, GC.self, Diff.self, SSHDConfig.self,
            SyslogConfig.self,
            Setup.self,
            ClientConfig.self,
            Status.self, Logs.self, Metrics.self, ReviewCommand.self, InstallUnits.self, Rollout.self, Mirror.self,
        ]
    )
}
