import FleetProtocol
import Inventory
import Testing

/// `quota_mib` and `quota_inodes` (the hosts' disk quotas): 256 MiB and 10,000 files unless set, 0 for no limit,
/// a host's own values over `[server]`'s; hostile values are refused naming the file, the table and the key.
extension FleetConfigurationTests {
    @Test func quotasAre256MiBAnd10000FilesUnlessSet() throws {
        let configuration = try parse("")
        #expect(configuration.server.quotas.standard == HostQuota(mebibytes: 256, inodes: 10_000))
        #expect(configuration.server.quotas.standard.byteLimit == 256 << 20)
        #expect(configuration.server.quotas.limitsAnyHost)
        #expect(configuration.server.quotas.quota(for: try HostName("a")) == .standard)
    }

    @Test func aHostsOwnQuotaOverridesTheServersKeyByKey() throws {
        let toml = """
            [server]
            quota_mib = 64
            quota_inodes = 0

            [hosts.a]
            quota_mib = 1024

            [hosts.b]
            """
        let quotas = try parse(toml).server.quotas
        #expect(quotas.standard == HostQuota(mebibytes: 64, inodes: 0))
        #expect(quotas.quota(for: try HostName("a")) == HostQuota(mebibytes: 1024, inodes: 0))
        #expect(quotas.quota(for: try HostName("b")) == HostQuota(mebibytes: 64, inodes: 0))
        #expect(quotas.overrides.keys.sorted() == ["a"])
    }

    @Test func zeroEverywhereMeansNoQuota() throws {
        let quotas = try parse("[server]\nquota_mib = 0\nquota_inodes = 0\n").server.quotas
        #expect(quotas.standard.isUnlimited && !quotas.limitsAnyHost)
        let oneHost = try parse("[server]\nquota_mib = 0\nquota_inodes = 0\n[hosts.a]\nquota_inodes = 500\n")
        #expect(oneHost.server.quotas.limitsAnyHost)
        #expect(oneHost.server.quotas.quota(for: try HostName("a")) == HostQuota(mebibytes: 0, inodes: 500))
    }

    @Test func theLargestLimitsAreAccepted() throws {
        let quotas = try parse("[server]\nquota_mib = 1073741824\nquota_inodes = 1000000000\n").server.quotas
        #expect(quotas.standard.byteLimit == 1 << 50)
        #expect(quotas.standard.inodes == 1_000_000_000)
    }

    @Test(arguments: [
        "-1", "1", "15", "1073741825", "9223372036854775807", "-9223372036854775808", "1.5", "\"256M\"", "\"256\"",
        "true", "[256]", "{ mib = 256 }", "1e3",
    ])
    func hostileQuotaSizesAreRefusedNamingTheFile(value: String) throws {
        for (table, context) in [("[server]", "[server]"), ("[hosts.a]", "[hosts.a]")] {
            let found = try problems("\(table)\nquota_mib = \(value)\n")
            #expect(found.count == 1, "\(found)")
            #expect(
                found.first?.contains(
                    "fleet.toml: \(context) key \"quota_mib\": expected 0 (no limit) or a whole number of MiB in "
                        + "16...1073741824") == true, "\(found)")
        }
    }

    @Test(arguments: ["-1", "99", "1000000001", "2.0", "\"10k\"", "false"])
    func hostileInodeLimitsAreRefusedNamingTheFile(value: String) throws {
        let found = try problems("[server]\nquota_inodes = \(value)\n[hosts.b]\nquota_inodes = \(value)\n")
        #expect(found.count == 2, "\(found)")
        #expect(found.contains { $0.contains("[server] key \"quota_inodes\": expected 0 (no limit)") }, "\(found)")
        #expect(found.contains { $0.contains("[hosts.b] key \"quota_inodes\": expected 0 (no limit)") }, "\(found)")
    }

    @Test func quotaKeysElsewhereAreUnknownKeys() throws {
        let found = try problems("[defaults]\nquota_mib = 64\n")
        #expect(found.count == 1 && found.first?.contains("[defaults]: unknown key \"quota_mib\"") == true, "\(found)")
        // A misspelt key is named, not ignored.
        let misspelt = try problems("[server]\nquota_mb = 64\n")
        #expect(misspelt.first?.contains("[server]: unknown key \"quota_mb\"") == true, "\(misspelt)")
    }
}
