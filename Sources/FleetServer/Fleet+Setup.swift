import ArgumentParser
import Inventory
import ServerSetup

extension Fleet {
    struct Setup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the hosts' Unix users, authorized keys and chroot directories (idempotent).",
            discussion: """
                Checks that every ancestor of the chroot root is root-owned and not group/other-writable, as sshd \
                requires, and that each host's chroot is on the filesystem of the binary-cache pool \
                (<chroot root>/.cache-pool): a host's cache/ holds hard links into it (refused for hosts with \
                cache = true, a warning for the others). Sets each host's disk quota on that filesystem \
                ([server] quota_mib and quota_inodes, or the host's own): the QUOTA column shows its use; a \
                filesystem without user quotas gets a warning naming it and the fix.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Flag(help: "Print JSON for scripts.")
        var json = false

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let report = try await ServerProvisioner(configuration: configuration).run()
            if json {
                try printJSON(report)
            } else {
                var table = Table("HOST", "USER", "STATUS", "QUOTA", "DETAIL")
                for host in report.hosts {
                    table.add(
                        host.host, host.user, host.status, host.quotaSummary,
                        host.problem ?? host.actions.joined(separator: "; "))
                }
                print(table.render())
                for warning in report.warnings { print("warning: \(warning)") }
            }
            if !report.succeeded { throw ExitCode(1) }
        }
    }
}
