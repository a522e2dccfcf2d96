import FleetFiles
import FleetProtocol
import Inventory
import SQLiteKit
import ServerStore

/// What one ingest did, for tests, `--json` and the benchmark.
public struct IngestSummary: Sendable, Equatable, Codable {
    public var hostsListed = 0
    /// Hosts whose `logs/` held report or log names not examined before.
    public var hostsWithNewFiles = 0
    /// Files opened and read (a second ingest with nothing new reads none).
    public var filesRead = 0
    public var bytesRead: Int64 = 0
    public var reports = 0
    public var logs = 0
    public var heartbeats = 0
    public var refused = 0
    /// Ingested files deleted from `logs/` (beyond `logs_keep`).
    public var pruned = 0
    /// The same for the mirrors' pulled copies, which are not deleted here but on the mirror (`fleet mirror
    /// pull-logs` does it, and the next pull then drops the copies): mirror → `<host>/logs/<name>`.
    public var mirrorPrunable: [String: [String]] = [:]
    /// Warnings of this run that are not kept in state.db: names fleet-client does not write, a flooded or
    /// unreadable `logs/`, files that could not be read now. Host → lines.
    public var warnings: [String: [String]] = [:]

    public init() {}
}

/// Reads what hosts uploaded into their chroots' `logs/` into state.db, incrementally and defensively.
///
/// **Incremental.** Reports and logs are written once (fleet-client uploads under a temporary name and
/// renames), so a name that was examined is never opened again: `ingest_files` remembers every examined name
/// still present, and `review_hosts.listing_digest` a SHA-256 of those names in listing order. A host whose
/// `logs/` lists the same report and log names as last time costs one directory listing and one hash, and no
/// query of its own (if only the order changed, the names are compared with `ingest_files`: slower, still right);
/// the heartbeat slots (``HeartbeatSlot``, written in place), an older client's `heartbeat.json` and
/// `confirmation.json` (replaced by rename) are read again only when `lstat` shows another inode, size or mtime.
/// Of the heartbeats, the newest valid one by mtime is kept: a slot read later that is older than the kept
/// heartbeat never replaces it.
///
/// **Bounded.** After ingesting, the oldest ingested reports and logs beyond `[server] logs_keep` (each kind)
/// are deleted from `logs/`, if they are still the very file that was read (same inode, size, mtime). Nothing
/// that was not ingested is ever deleted: refused files stay, with their warning, until the host or the
/// sysadmin removes them. state.db keeps the newest `[server] report_history` reports and logs per host.
///
/// **Untrusted.** Only names fleet-client writes are opened (see ``UploadName``), relative to the directory,
/// with `O_NOFOLLOW | O_NONBLOCK`; only regular files with one link and under the caps of ``IngestLimits`` are
/// read; their JSON must agree with the host, the published generations and common sense
/// (``UploadValidator``). Anything else is refused with a warning for that host, and no other host is affected.
/// The time a file was received is its mtime: set by the server's sshd on upload, which hosts cannot change
/// (`internal-sftp -P setstat,fsetstat,…`), unlike the times written inside reports.
struct ReportIngest {
    let configuration: FleetConfiguration
    let store: ReviewStore
    let limits: IngestLimits

    /// Ingests `hosts`. `published` is the highest generation published to each host (0 or absent: none).
    /// `mirrors`: copies of mirrors' `logs/` pulled by `fleet mirror pull-logs`, read after each host's own with
    /// the same rules (each kept apart in the bookkeeping; what would be pruned is named in
    /// ``IngestSummary/mirrorPrunable``, to be deleted on the mirror, since the next pull would bring it back).
    func run(hosts: [HostConfiguration], published: [String: UInt64], mirrors: [MirrorLogs] = []) throws
        -> IngestSummary
    {
        var summary = IngestSummary()
        let hostRows = try store.hostRows()
        let replaced = try store.replacedFiles()
        for host in hosts {
            summary.hostsListed += 1
            let sources =
                [(mirror: String?.none, root: configuration.server.chrootRoot)]
                + mirrors.map { (mirror: Optional($0.mirror), root: $0.root) }
            for source in sources {
                let key = ReviewStore.bookkeepingKey(host: host.name.value, mirror: source.mirror)
                var work = HostIngest(
                    host: host, store: store, limits: limits, keep: configuration.server.logsKeep,
                    history: configuration.server.reportHistory,
                    validator: UploadValidator(
                        host: host.name, publishedGeneration: published[host.name.value] ?? 0, limits: limits),
                    row: hostRows[key], replaced: replaced[key] ?? [:], mirror: source.mirror)
                let layout = ChrootLayout(root: source.root, host: host.name)
                try work.run(logs: layout.logs, summary: &summary)
            }
        }
        return summary
    }
}

/// One host's part of an ingest.
struct HostIngest {
    let host: HostConfiguration
    let store: ReviewStore
    let limits: IngestLimits
    let keep: Int
    let history: Int
    let validator: UploadValidator
    let row: ReviewStore.HostRow?
    let replaced: [String: ReviewStore.BookkeptFile]
    /// The mirror these `logs/` were pulled from; nil: the host's chroot on this server.
    let mirror: String?

    private var warnings: [String] = []
    private var lastSeen: Int64?

    init(
        host: HostConfiguration, store: ReviewStore, limits: IngestLimits, keep: Int, history: Int,
        validator: UploadValidator, row: ReviewStore.HostRow?, replaced: [String: ReviewStore.BookkeptFile],
        mirror: String? = nil
    ) {
        self.host = host
        self.store = store
        self.limits = limits
        self.keep = keep
        self.history = history
        self.validator = validator
        self.row = row
        self.replaced = replaced
        self.mirror = mirror
    }

    var name: String { host.name.value }
    /// Whose `ingest_files` and listing digest these are: the host's, or `<host>@<mirror>`.
    var key: String { ReviewStore.bookkeepingKey(host: name, mirror: mirror) }

    mutating func run(logs path: String, summary: inout IngestSummary) throws {
        defer {
            if !warnings.isEmpty {
                summary.warnings[name, default: []] += warnings.map { line in
                    mirror.map { "mirror \($0): " + line } ?? line
                }
            }
        }
        let opened: DirectoryHandle?
        do throws(FileRefusal) {
            opened = try DirectoryHandle.open(path)
        } catch {
            switch error.kind {
            case .refused: warnings.append("logs/ \(error.reason): nothing in it was read")
            case .transient, .vanished: warnings.append("cannot open logs/: \(error.systemReason ?? error.reason)")
            }
            return
        }
        guard let directory = opened else {
            // No logs/ (never set up, or removed): nothing bookkept can still be there.
            if row?.listingDigest != nil || !replaced.isEmpty {
                try store.database.transaction {
                    try store.forget(host: key, names: Array(try store.bookkeptFiles(host: key).keys))
                    try store.saveListing(host: key, digest: nil, lastSeen: nil)
                }
            }
            return
        }

        let (names, more) = directory.names(limit: limits.listedNames)
        if more {
            warnings.append(
                "logs/ holds more than \(limits.listedNames) entries; only the first \(limits.listedNames) listed "
                    + "were looked at"
            )
        }
        var writtenOnce: [String] = []
        var invalid: [String] = []
        var temporary = 0
        var replacedPresent: [String] = []
        for entry in names {
            switch UploadName(entry) {
            case .report, .log: writtenOnce.append(entry)
            case .heartbeat, .confirmation: replacedPresent.append(entry)
            case .temporary: temporary += 1
            case .invalid: invalid.append(entry)
            }
        }
        if !invalid.isEmpty {
            let examples = invalid.sorted().prefix(3).map { quoted(String($0.prefix(80))) }.joined(separator: ", ")
            warnings.append(
                "\(invalid.count) file(s) in logs/ with names fleet-client does not write, left unread: \(examples)"
                    + (invalid.count > 3 ? ", …" : ""))
        }
        if temporary > 100 {
            warnings.append("\(temporary) unfinished uploads (\(UploadName.temporaryPrefix)*) in logs/")
        }
        // In the order the directory lists them, not sorted: an unchanged directory lists its names in the same
        // order, and a digest that differs only because the order changed just costs the comparison below.
        let digest = Self.digest(writtenOnce)
        var finalDigest = digest
        var pruneCandidates: [(name: String, identity: FileIdentity)]?

        let replacedWork = replacedToExamine(replacedPresent, in: directory)
        if digest != row?.listingDigest || !replacedWork.isEmpty {
            try store.database.transaction {
                if digest != row?.listingDigest {
                    summary.hostsWithNewFiles += 1
                    pruneCandidates = try examineNew(
                        writtenOnce, in: directory, summary: &summary, digest: &finalDigest)
                }
                try examineReplaced(replacedWork, in: directory, summary: &summary)
            }
        }
        // A mirror's copy is not pruned here (the next pull would only bring the files back): it is named for
        // `fleet mirror pull-logs` to delete on the mirror.
        if let mirror, let pruneCandidates, !pruneCandidates.isEmpty {
            summary.mirrorPrunable[mirror, default: []] += pruneCandidates.map { "\(name)/logs/\($0.name)" }
        }
        if mirror == nil, let pruneCandidates, !pruneCandidates.isEmpty {
            var pruned: [String] = []
            for candidate in pruneCandidates
            where directory.removeFile(candidate.name, ifStill: { $0.identity.recorded == candidate.identity }) {
                pruned.append(candidate.name)
            }
            summary.pruned += pruned.count
            if !pruned.isEmpty {
                let gone = Set(pruned)
                finalDigest = Self.digest(try currentlyKnown(writtenOnce).filter { !gone.contains($0) })
                try store.database.transaction { try store.forget(host: key, names: pruned) }
            }
        }
        if let mirror {
            // The listing is the mirror copy's; being seen is the host's, wherever it was.
            if finalDigest != row?.listingDigest {
                try store.saveListing(host: key, digest: finalDigest, lastSeen: nil)
            }
            if let lastSeen { try store.saveLastSeen(host: name, lastSeen, via: mirror) }
        } else if finalDigest != row?.listingDigest || lastSeen != nil {
            try store.saveListing(host: name, digest: finalDigest, lastSeen: lastSeen)
        }
    }

    /// Examines the report and log names not examined before; returns the ingested files beyond `logs_keep`.
    private mutating func examineNew(
        _ present: [String], in directory: DirectoryHandle, summary: inout IngestSummary, digest: inout String
    ) throws -> [(name: String, identity: FileIdentity)] {
        var known = try store.bookkeptFiles(host: key).filter { UploadName($0.key).isWrittenOnce }
        let presentSet = Set(present)
        let vanished = known.keys.filter { !presentSet.contains($0) }
        try store.forget(host: key, names: vanished)
        for gone in vanished { known[gone] = nil }

        // Oldest first, and a run's log before its report.
        let new = present.filter { known[$0] == nil }.sorted { Self.order($0) < Self.order($1) }
        if new.count > limits.newFilesPerRun {
            warnings.append(
                "\(new.count) new reports and logs in logs/: \(limits.newFilesPerRun) read now, the rest in later runs")
        }
        var ingestedAny = false
        for entry in new.prefix(limits.newFilesPerRun) {
            guard let file = examine(entry, in: directory, summary: &summary) else { continue }
            try store.bookkeep(host: key, name: entry, file)
            known[entry] = file
            if file.ingested { ingestedAny = true }
        }
        if ingestedAny { try store.trimHistory(host: name, keep: history) }
        digest = Self.digest(present.filter { known[$0] != nil })

        var candidates: [(name: String, identity: FileIdentity)] = []
        for isReport in [true, false] {
            let ingested = present.filter { entry in
                guard let file = known[entry], file.ingested else { return false }
                if case .report = UploadName(entry) { return isReport }
                return !isReport
            }.sorted()
            for entry in ingested.dropLast(keep) { candidates.append((entry, known[entry]!.identity)) }
        }
        return candidates
    }

    private func currentlyKnown(_ present: [String]) throws -> [String] {
        let known = try store.bookkeptFiles(host: key)
        return present.filter { known[$0] != nil }
    }

    /// Reads one new report or log: the bookkeeping row to keep, or nil when it should be tried again later.
    private mutating func examine(
        _ entry: String, in directory: DirectoryHandle, summary: inout IngestSummary
    ) -> ReviewStore.BookkeptFile? {
        let kind = UploadName(entry)
        let file: UploadedFile
        do throws(FileRefusal) {
            if case .log = kind {
                file = try Self.readLog(entry, in: directory, head: limits.logHeadBytes, tail: limits.logTailBytes)
            } else {
                let read = try directory.read(entry, limit: limits.reportBytes)
                file = UploadedFile(bytes: read.bytes, identity: read.status.identity.recorded)
            }
        } catch {
            return refused(entry, error, summary: &summary)
        }
        summary.filesRead += 1
        summary.bytesRead += Int64(file.bytes.count)
        do {
            switch kind {
            case .report(let generation):
                let received = file.identity.modifiedNanosecondsSinceEpoch
                let previous = try store.previousWord(host: name, before: received)
                switch validator.report(file.bytes, nameGeneration: generation, received: received, previous: previous)
                {
                case .valid(let report):
                    if let problem = validator.checkClientVersion(report.clientVersion) {
                        return rejected(problem, file.identity, summary: &summary)
                    }
                    try store.insertReport(host: name, name: entry, received: received, report, json: file.bytes)
                    summary.reports += 1
                case .invalid(let problem):
                    return rejected(problem, file.identity, summary: &summary)
                }
            default:
                try store.insertLog(
                    host: name, name: entry, received: file.identity.modifiedNanosecondsSinceEpoch,
                    size: file.identity.size, bytes: file.bytes)
                summary.logs += 1
            }
        } catch {
            warnings.append("\(entry): could not be stored: \(error)")
            return nil
        }
        seen(file.identity)
        return ReviewStore.BookkeptFile(identity: file.identity, ingested: true, warning: nil)
    }

    /// Reads a log: whole when it is at most `head + tail` bytes, else its first `head` and last `tail` bytes
    /// with a line saying how much was left out.
    private static func readLog(
        _ entry: String, in directory: DirectoryHandle, head: Int, tail: Int
    ) throws(FileRefusal) -> UploadedFile {
        let read = try directory.readEnds(entry, head: head, tail: tail)
        let identity = read.status.identity.recorded
        guard let last = read.tail else { return UploadedFile(bytes: read.head, identity: identity) }
        let size = Int(read.status.size)
        let note =
            "\n[fleet: \(size - head - tail) bytes of this \(size)-byte log were not kept here "
            + "(the server keeps the first \(head) and the last \(tail))]\n"
        return UploadedFile(bytes: read.head + Array(note.utf8) + last, identity: identity)
    }

    /// Which of the heartbeats and `confirmation.json` were written (or removed) since they were read: one
    /// `lstat` each, no open.
    private func replacedToExamine(_ present: [String], in directory: DirectoryHandle) -> [(
        name: String, present: Bool
    )] {
        var work: [(name: String, present: Bool)] = []
        for entry in UploadName.heartbeatNames + [UploadName.confirmationName] {
            guard present.contains(entry), let current = directory.status(of: entry) else {
                if replaced[entry] != nil { work.append((entry, false)) }
                continue
            }
            if let bookkept = replaced[entry], bookkept.identity == current.identity.recorded { continue }
            work.append((entry, true))
        }
        return work
    }

    /// The heartbeats and `confirmation.json`: read again only when they changed.
    ///
    /// A heartbeat slot that is empty or the start of a JSON object that does not parse was caught while being
    /// written, or its write was interrupted. That is no alarm: the host's other slot holds its previous heartbeat,
    /// and its next poll writes this slot again (its client did not record it as written). So it is bookkept
    /// without a warning (nothing sticks in `fleet status`), not counted as refused, and read again once it
    /// changes, which finishing the write does (size and mtime). A host that stops polling shows as silent: that
    /// is the alarm that matters. Any other invalid heartbeat is refused with a warning, as before.
    private mutating func examineReplaced(
        _ work: [(name: String, present: Bool)], in directory: DirectoryHandle, summary: inout IngestSummary
    ) throws {
        for (entry, present) in work {
            guard present else {
                try store.forget(host: key, names: [entry])
                continue
            }
            let read: UploadedFile
            do throws(FileRefusal) {
                let whole = try directory.read(entry, limit: limits.smallFileBytes)
                read = UploadedFile(bytes: whole.bytes, identity: whole.status.identity.recorded)
            } catch {
                if let file = refused(entry, error, summary: &summary) {
                    try store.bookkeep(host: key, name: entry, file)
                }
                continue
            }
            let file: ReviewStore.BookkeptFile
            summary.filesRead += 1
            summary.bytesRead += Int64(read.bytes.count)
            if UploadName(entry) == .heartbeat {
                if entry != UploadName.heartbeatName, UploadValidator.isUnfinishedHeartbeat(read.bytes) {
                    try store.bookkeep(
                        host: key, name: entry, .init(identity: read.identity, ingested: false, warning: nil))
                    continue
                }
                let received = read.identity.modifiedNanosecondsSinceEpoch
                let previous = try store.previousWord(host: name, before: received)
                switch validator.heartbeat(read.bytes, received: received, previous: previous) {
                case .valid(let beat):
                    if let problem = validator.checkClientVersion(beat.clientVersion) {
                        file = rejected(problem, read.identity, summary: &summary)
                        break
                    }
                    // The other slot, an older client's heartbeat.json, or a mirror's copy may be older than the
                    // heartbeat already kept. A tie goes to this read: mtimes are as coarse as the kernel's clock
                    // tick, and a slot written twice within one (a wrong draft, then the right heartbeat) must
                    // end as the second.
                    var newer = true
                    if let kept = try store.heartbeat(host: name) { newer = kept.received <= received }
                    if newer { try store.saveHeartbeat(host: name, received: received, beat, json: read.bytes) }
                    summary.heartbeats += 1
                    seen(read.identity)
                    file = .init(identity: read.identity, ingested: true, warning: nil)
                case .invalid(let problem):
                    file = rejected(problem, read.identity, summary: &summary)
                }
            } else {
                switch validator.confirmation(read.bytes) {
                case .valid:
                    seen(read.identity)
                    file = .init(identity: read.identity, ingested: true, warning: nil)
                case .invalid(let problem):
                    file = rejected(problem, read.identity, summary: &summary)
                }
            }
            try store.bookkeep(host: key, name: entry, file)
        }
    }

    /// What to bookkeep of a file ``DirectoryHandle`` did not read: nil when it should be tried again later.
    private mutating func refused(
        _ entry: String, _ refusal: FileRefusal, summary: inout IngestSummary
    ) -> ReviewStore.BookkeptFile? {
        switch refusal.kind {
        case .vanished:
            return nil
        case .transient:
            warnings.append("\(entry): \(refusal.reason); tried again next time")
            return nil
        case .refused:
            return rejected(
                refusal.reason,
                refusal.status?.identity.recorded
                    ?? FileIdentity(recordedSize: -1, modifiedNanosecondsSinceEpoch: -1, inode: 0),
                summary: &summary)
        }
    }

    /// A file refused for good while it stays as it is: bookkept with the reason as its warning.
    private func rejected(
        _ reason: String, _ identity: FileIdentity, summary: inout IngestSummary
    ) -> ReviewStore.BookkeptFile {
        summary.refused += 1
        return ReviewStore.BookkeptFile(identity: identity, ingested: false, warning: reason)
    }

    private mutating func seen(_ identity: FileIdentity) {
        let received = identity.modifiedNanosecondsSinceEpoch
        lastSeen = max(lastSeen ?? received, received)
    }

    /// Time, then the log before the report of the same run.
    static func order(_ entry: String) -> String {
        if entry.hasPrefix("log-") { return String(entry.dropFirst(4)) + "\u{0}" }
        if entry.hasPrefix("report-") { return String(entry.dropFirst(7)) + "\u{1}" }
        return entry
    }

    /// SHA-256 of the names, one per line, in the order given.
    static func digest(_ names: [String]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(names.count * 40)
        for entry in names {
            bytes.append(contentsOf: entry.utf8)
            bytes.append(0x0a)
        }
        return SHA256Hasher.hex(bytes)
    }
}

extension UploadValidator {
    /// A report's or heartbeat's `clientVersion` must be a version fleet-client writes (``FleetVersion``, at most
    /// 64 plain ASCII characters): anything else (control characters, escape sequences, megabytes) is refused
    /// with the rest of the file, so what `fleet status` prints and stores is always a plain version. Absent is
    /// fine: clients before 0.5.0 did not say.
    func checkClientVersion(_ text: String?) -> String? {
        guard let text, FleetVersion(text) == nil else { return nil }
        let shown = text.count > 40 ? String(text.prefix(40)) + "…" : text
        return "its clientVersion \(quoted(shown)) (\(text.utf8.count) bytes) is not a fleet version "
            + "(MAJOR.MINOR.PATCH[-prerelease], at most \(FleetVersion.longestText) characters)"
    }
}
