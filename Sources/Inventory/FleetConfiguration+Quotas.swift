public import FleetProtocol
import TOMLKit

/// How much of the chroots' filesystem one host may fill through its `logs/` (the only place it can write):
/// `fleet setup` sets it as the kernel's user quota of the host's Unix user.
public struct HostQuota: Sendable, Equatable {
    /// Hard limit in MiB (2^20 bytes); 0 = no limit.
    public var mebibytes: Int
    /// Hard limit on files and directories; 0 = no limit.
    public var inodes: Int

    public init(mebibytes: Int, inodes: Int) {
        self.mebibytes = mebibytes
        self.inodes = inodes
    }

    public var byteLimit: UInt64 { UInt64(mebibytes) << 20 }
    /// Neither limit: `fleet setup` clears the user's quota.
    public var isUnlimited: Bool { mebibytes == 0 && inodes == 0 }

    /// 256 MiB and 10,000 files: a host keeps at most `logs_keep` (20) reports of at most 256 KiB and as many logs
    /// of at most 4 MiB (client.toml's `log_limit_bytes` default) ingested, plus what arrives between two
    /// `fleet status` runs: about 90 MiB and 50 files, so the default leaves room for a backlog of days.
    public static let standard = HostQuota(mebibytes: 256, inodes: 10_000)
    /// Below 16 MiB a host could not upload one full default-sized log beside its kept ones.
    public static let mebibyteRange = 16...(1 << 30)
    /// Below 100 files a host could not keep `logs_keep` reports and logs; ext4 counts inodes in 32 bits.
    public static let inodeRange = 100...1_000_000_000
}

/// `[server] quota_mib` / `quota_inodes` and their per-host overrides in `[hosts.<name>]`.
public struct QuotaConfiguration: Sendable, Equatable {
    /// Every host's quota unless it sets its own.
    public var standard = HostQuota.standard
    /// Hosts that set either key themselves, by name (the other key comes from `[server]`).
    public var overrides: [String: HostQuota] = [:]

    public init() {}

    public func quota(for host: HostName) -> HostQuota { overrides[host.value] ?? standard }

    /// Whether any host has a limit: without one, `fleet setup` has no quota to set and no reason to warn.
    public var limitsAnyHost: Bool { !standard.isUnlimited || overrides.values.contains { !$0.isUnlimited } }

    static let keys = ["quota_mib", "quota_inodes"]
}

extension FleetConfiguration {
    /// Reads the quota keys of `[server]` and of every well-formed `[hosts.<name>]` (other problems of those
    /// tables are the main parser's).
    static func parseQuotas(server: TOMLTable, hosts: TOMLTable?, _ reader: inout TOMLReader) -> QuotaConfiguration {
        var configuration = QuotaConfiguration()
        configuration.standard = reader.quota(server, in: "[server]", otherwise: .standard)
        for name in (hosts?.keys ?? []).sorted() {
            guard (try? HostName(name)) != nil, let table = hosts?[name]?.table,
                QuotaConfiguration.keys.contains(where: { table[$0] != nil })
            else { continue }
            configuration.overrides[name] = reader.quota(
                table, in: "[hosts.\(name)]", otherwise: configuration.standard)
        }
        return configuration
    }
}

extension TOMLReader {
    /// `quota_mib` and `quota_inodes` of `table`, each `otherwise`'s when absent or refused.
    mutating func quota(_ table: TOMLTable, in context: String, otherwise: HostQuota) -> HostQuota {
        HostQuota(
            mebibytes: quotaLimit(table, "quota_mib", in: context, unit: "MiB", range: HostQuota.mebibyteRange)
                ?? otherwise.mebibytes,
            inodes: quotaLimit(table, "quota_inodes", in: context, unit: "files", range: HostQuota.inodeRange)
                ?? otherwise.inodes)
    }

    /// A limit: 0 (none) or an integer in `range`. One unit only (no "256M" strings to misread).
    mutating func quotaLimit(
        _ table: TOMLTable, _ key: String, in context: String, unit: String, range: ClosedRange<Int>
    ) -> Int? {
        guard let value = table[key] else { return nil }
        guard let number = value.int, number == 0 || range.contains(number) else {
            problem(
                "\(context) key \(quoted(key)): expected 0 (no limit) or a whole number of \(unit) in "
                    + "\(range.lowerBound)...\(range.upperBound), e.g. \(key) = \(range.lowerBound * 16)")
            return nil
        }
        return number
    }
}
