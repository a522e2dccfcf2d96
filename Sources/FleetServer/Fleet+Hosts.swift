import ArgumentParser
import FleetFiles
import FleetProtocol
import Inventory
import Publishing
import ServerStore

extension Fleet {
    struct Hosts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the hosts of the inventory.")

        @OptionGroup var global: GlobalOptions

        @Flag(help: "Print JSON for scripts.")
        var json = false

        @Option(
            name: .customLong("role"),
            help: ArgumentHelp("Only hosts having this role (repeat for several).", valueName: "role"))
        var roles: [String] = []

        struct Row: Codable {
            var host: String
            var user: String
            var attribute: String
            var operation: String
            var build: Bool
            var cache: Bool
            var key: String?
            /// In import order, included roles first.
            var roles: [String]
            var publishedGeneration: UInt64?
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let rows = try configuration.selecting([], roles: roles).map { host in
                let layout = ChrootLayout(root: configuration.server.chrootRoot, host: host.name)
                let manifest = (try? FileIO.readNoFollow(layout.manifest, limit: Manifest.sizeLimit))
                    .flatMap { try? Manifest.readUnverified($0) }
                return Row(
                    host: host.name.value, user: host.unixUser, attribute: host.attribute,
                    operation: host.operation.rawValue, build: host.build, cache: host.cache,
                    key: host.publicKey.map { "\($0.type) \($0.blob.prefix(12))…" }, roles: host.roles,
                    publishedGeneration: manifest?.generation)
            }
            if json { return try printJSON(rows) }
            var table = Table("HOST", "USER", "ATTRIBUTE", "OPERATION", "BUILD", "CACHE", "KEY", "ROLES", "PUBLISHED")
            for row in rows {
                table.add(
                    row.host, row.user, row.attribute, row.operation, row.build ? "yes" : "no",
                    row.cache ? "yes" : "no",
                    row.key ?? "MISSING", row.roles.isEmpty ? "-" : row.roles.joined(separator: ","),
                    row.publishedGeneration.map { "generation \($0)" } ?? "never")
            }
            print(table.render())
        }
    }
}
