import ArgumentParser
import Inventory
import ServerSetup

extension Fleet {
    struct SyslogConfig: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "syslog-config",
            abstract: "Print the rsyslog configuration that gives each host's chroot a dev/log socket.",
            discussion: """
                internal-sftp logs every request a host makes (what it read, wrote and renamed) to /dev/log inside \
                the host's chroot; without a socket there, those lines are lost. Install the output as \
                \(SyslogConfiguration.suggestedPath) and restart rsyslog; run it again when hosts change.
                """)

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let configuration = try global.loadConfiguration()
            print(try SyslogConfiguration.render(configuration), terminator: "")
        }
    }
}
