import CommandRunner
import FleetFiles
import FleetProtocol
import Foundation
import Glibc
import Inventory

/// `fleet setup`'s disk quotas: each host's Unix user owns only its chroot's `logs/`, so a user quota on the
/// chroots' filesystem caps what a host can upload, and a host that fills its quota fails its own uploads
/// (`EDQUOT`) while the other hosts and the server go on.
///
/// A filesystem without user quotas (or with them off) gets one warning naming it, its mount point and the
/// fix, and setup goes on: quotas are a bound on misbehaving hosts, not a condition for serving the others.
struct QuotaProvisioner {
    let configuration: FleetConfiguration

    /// The mount holding the chroot root, as `findmnt` describes it (for messages only).
    struct Mount: Decodable, Sendable {
        var target: String
        var source: String
        var fstype: String

        /// e.g. "ext4 /dev/sda2 mounted at /srv".
        var description: String { "\(fstype) \(source) mounted at \(target)" }
    }

    /// Sets every provisioned host's quota; returns the warnings and whether limits are enforced.
    func run(outcomes: inout [ServerProvisioner.HostOutcome]) async -> (warnings: [String], enforced: Bool) {
        let root = configuration.server.chrootRoot
        let quotas = configuration.server.quotas
        let state: UserQuota.State
        do {
            state = try UserQuota.state(ofFilesystemAt: root)
        } catch {
            guard quotas.limitsAnyHost else { return ([], false) }
            let mount = await Self.mount(of: root)
            // The kernel answers ENOSYS both for a filesystem without quota support and for one with none on.
            if error.errno == ENOSYS, let mount, Self.quotaFilesystems.contains(mount.fstype) {
                return ([Self.offWarning(mount, root: root)], false)
            }
            return ([Self.unsupportedWarning(error, mount, root: root)], false)
        }
        guard state.accounting else {
            guard quotas.limitsAnyHost else { return ([], false) }
            return ([Self.offWarning(await Self.mount(of: root), root: root)], false)
        }
        var warnings: [String] = []
        var full: [String] = []
        for (index, host) in configuration.hosts.enumerated() where outcomes[index].status != "refused" {
            do {
                guard let user = Accounts.user(named: host.unixUser) else { continue }
                let wanted = quotas.quota(for: host.name)
                var current = try UserQuota.of(uid: user.uid, onFilesystemAt: root)
                if current.byteLimit != wanted.byteLimit || current.inodeLimit != UInt64(wanted.inodes) {
                    try UserQuota.set(
                        uid: user.uid, byteLimit: wanted.byteLimit, inodeLimit: UInt64(wanted.inodes),
                        onFilesystemAt: root)
                    current = try UserQuota.of(uid: user.uid, onFilesystemAt: root)
                    outcomes[index].actions.append(
                        wanted.isUnlimited ? "removed the disk quota" : "set the disk quota to \(Self.limits(current))")
                    if outcomes[index].status == "unchanged" { outcomes[index].status = "updated" }
                }
                outcomes[index].quota = current
                if Self.isFull(current) { full.append("\(host.name) (\(Self.usage(current)))") }
            } catch {
                warnings.append(
                    "could not set the disk quota of \(host.name) (user \(host.unixUser)): \(error); its uploads are "
                        + "not capped")
            }
        }
        if !full.isEmpty {
            warnings.append(
                "\(full.joined(separator: ", ")) filled the disk quota: its uploads to logs/ fail until `fleet status` "
                    + "has pruned what it ingested (logs_keep) or quota_mib / quota_inodes is raised in "
                    + "\(configuration.file)")
        }
        if !state.enforcing {
            let mount = await Self.mount(of: root)
            warnings.append(
                "user quotas are counted but not enforced on \(mount?.description ?? "the filesystem of \(root)"): "
                    + "the limits are set, but a host can still fill the filesystem until it is mounted with the "
                    + "option usrquota (in /etc/fstab too)")
        }
        return (warnings, state.enforcing)
    }

    /// Filesystems whose user quotas fleet knows how to turn on.
    static let quotaFilesystems = ["ext4", "xfs"]

    /// The warning for a filesystem that could have user quotas but has them off.
    static func offWarning(_ mount: Mount?, root: String) -> String {
        "user quotas are off on \(mount?.description ?? "the filesystem of \(root)"), which holds the chroots, so one "
            + "host can fill it through its logs/ (uploads, for every host, then fail): " + fix(for: mount, root: root)
    }

    /// The warning for a filesystem whose quota state cannot even be read.
    static func unsupportedWarning(_ error: FileSystemError, _ mount: Mount?, root: String) -> String {
        let name = mount?.description ?? "the filesystem of \(root)"
        let reason =
            [ENOSYS, ENOTTY, EOPNOTSUPP, ENOTBLK, ENODEV].contains(error.errno)
            ? "\(name) has no disk quotas (this filesystem, or this kernel, does not offer them)"
            : "cannot read whether \(name) has disk quotas (\(error))"
        return reason + ", so one host can fill it through its logs/ (uploads, for every host, then fail): "
            + fix(for: mount, root: root)
    }

    /// How to turn user quotas on for `mount`'s kind of filesystem.
    static func fix(for mount: Mount?, root: String) -> String {
        let then =
            ", then run `fleet setup` again (or set quota_mib = 0 and quota_inodes = 0 in [server] to go without)"
        switch mount?.fstype {
        case "ext4":
            let device = mount?.source ?? "<device>"
            return "unmount it, `tune2fs -O quota -Q usrquota \(device)`, and mount it with the option usrquota "
                + "(in /etc/fstab too; the kernel needs CONFIG_QUOTA and CONFIG_QFMT_V2)" + then
        case "xfs":
            return "mount it with the option usrquota (xfs turns quotas on only when mounting: put it in /etc/fstab "
                + "and remount; the kernel needs CONFIG_XFS_QUOTA)" + then
        default:
            return
                "put the chroot root \(root) on an ext4 filesystem with user quotas (`tune2fs -O quota -Q usrquota`, "
                + "mount option usrquota) or on xfs mounted with usrquota" + then
        }
    }

    /// The mount holding `path`, from `findmnt`; nil when it cannot say (the messages then name the path).
    static func mount(of path: String) async -> Mount? {
        struct Listing: Decodable { var filesystems: [Mount] }
        guard
            let output = try? await Command.run(
                "findmnt", ["--json", "--output", "TARGET,SOURCE,FSTYPE", "--target", path], outputLimit: 1 << 20),
            output.succeeded,
            let listing = try? JSONDecoder().decode(Listing.self, from: Data(output.standardOutput.utf8))
        else { return nil }
        return listing.filesystems.first
    }

    static func isFull(_ quota: UserQuota) -> Bool {
        (quota.byteLimit > 0 && quota.bytesUsed >= quota.byteLimit)
            || (quota.inodeLimit > 0 && quota.inodesUsed >= quota.inodeLimit)
    }

    /// e.g. "256 MiB, 10000 files".
    static func limits(_ quota: UserQuota) -> String {
        "\(quota.byteLimit == 0 ? "no limit" : mebibytes(quota.byteLimit)), "
            + (quota.inodeLimit == 0 ? "any number of files" : "\(quota.inodeLimit) files")
    }

    /// e.g. "12.5 of 256 MiB, 40 of 10000 files".
    static func usage(_ quota: UserQuota) -> String {
        let bytes =
            quota.byteLimit == 0
            ? "\(mebibytes(quota.bytesUsed)) (no limit)"
            : "\(ByteCount.mebibytes(quota.bytesUsed)) of \(mebibytes(quota.byteLimit))"
        let files =
            quota.inodeLimit == 0
            ? "\(quota.inodesUsed) files (no limit)" : "\(quota.inodesUsed) of \(quota.inodeLimit) files"
        return bytes + ", " + files
    }

    static func mebibytes(_ bytes: UInt64) -> String { ByteCount.mebibytes(bytes) + " MiB" }
}

extension ServerProvisioner.HostOutcome {
    /// The QUOTA column of `fleet setup`: use against limits, or "-" where quotas are off.
    public var quotaSummary: String { quota.map(QuotaProvisioner.usage) ?? "-" }
}
