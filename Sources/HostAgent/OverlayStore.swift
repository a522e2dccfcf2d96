public import ClientStateStore
import FleetFiles
import FleetProtocol
public import Foundation
import Glibc

/// A host-local overlay: a NixOS module the host adds on top of the fleet's system, copied into the client's
/// state so that whoever added it (a job) may delete its checkout.
public struct Overlay: Codable, Sendable, Equatable {
    /// How the overlay gives its module.
    public enum Kind: String, Codable, Sendable {
        /// A flake exposing `nixosModules.default` (its own inputs stay its own).
        case flake
        /// A plain `default.nix` module.
        case module
    }

    public var name: String
    /// SHA-256 over the copied tree (names, kinds, executable bits, contents, link targets): what it is.
    public var digest: String
    public var kind: Kind
    public var addedAt: String
}

/// `<state_dir>/overlays/<name>/` and their record `<state_dir>/overlays.json`: adding (copy, check, record),
/// removing and listing host-local overlays.
///
/// Only root adds overlays (the command checks), and everything here is root's alone (0700 directories,
/// 0600/0700 files): the page and the fleet cannot change what a host adds on top of their system. A copy is
/// checked as it is made: links leaving the directory, devices, fifos and sockets are refused, and so are more
/// entries or bytes than the caps; a refused overlay leaves the state directory as it was.
public struct OverlayStore: Sendable {
    /// Caps on what one overlay may hold; small on purpose (a module, not a package set).
    public struct Limits: Sendable {
        public var entries: Int
        public var bytes: Int64

        public init(entries: Int = 10_000, bytes: Int64 = 64 << 20) {
            self.entries = entries
            self.bytes = bytes
        }
    }

    /// The record of the overlays in effect, in `overlays.json`.
    struct Record: Codable {
        var format = 1
        var overlays: [Overlay] = []
    }

    public let stateDirectory: String
    public var limits: Limits

    public init(stateDirectory: String, limits: Limits = Limits()) {
        self.stateDirectory = stateDirectory
        self.limits = limits
    }

    var directory: String { stateDirectory + "/overlays" }
    var recordPath: String { stateDirectory + "/overlays.json" }
    public func path(of name: String) -> String { directory + "/" + name }

    /// The overlays in effect, by name; none when there is no record. An overlay recorded but missing from
    /// `overlays/` is an error: a run never builds without an overlay the host asked for.
    public func load() throws(ClientError) -> [Overlay] {
        let overlays = try loadRecord()
        for overlay in overlays where (try? FileStatus.of(path(of: overlay.name)))??.kind != .directory {
            throw ClientError(
                "\(recordPath) names the overlay \(overlay.name), which is not in \(directory); remove it with "
                    + "`fleet-client overlay remove \(overlay.name)` and add it again")
        }
        return overlays
    }

    /// The record alone, without looking at the copies: what add and remove change.
    private func loadRecord() throws(ClientError) -> [Overlay] {
        let bytes: [UInt8]
        do {
            guard try FileStatus.of(recordPath) != nil else { return [] }
            bytes = try FileIO.readNoFollow(recordPath, limit: 1 << 20)
        } catch {
            throw ClientError("cannot read \(recordPath): \(error)", systemError: error.errno)
        }
        let record: Record
        do {
            record = try JSONDecoder().decode(Record.self, from: Data(bytes))
        } catch {
            throw ClientError(
                "\(recordPath) is not a fleet-client overlay record (\(error)); remove it and add the overlays again")
        }
        for overlay in record.overlays where !HostName.isValid(overlay.name) {
            throw ClientError(
                "\(recordPath) names the overlay \(String(reflecting: overlay.name)), which is not an overlay name; "
                    + "remove the file and add the overlays again")
        }
        return record.overlays.sorted { $0.name < $1.name }
    }

    /// One digest for the set of overlays in effect (nil for none), which a run compares with the set it applied.
    public static func setDigest(_ overlays: [Overlay]) -> String? {
        guard !overlays.isEmpty else { return nil }
        var hasher = SHA256Hasher()
        for overlay in overlays.sorted(by: { $0.name < $1.name }) {
            hasher.update("\(overlay.name) \(overlay.digest)\n")
        }
        return hasher.finalizeHex()
    }

    /// Copies `source` into the state as the overlay `name` (replacing one of that name), checking it as it
    /// goes, and records it. Holds the run lock, so no run sees half an overlay.
    @discardableResult
    public func add(name: String, from source: String, at time: Date = Date()) throws(ClientError) -> Overlay {
        guard HostName.isValid(name) else {
            throw ClientError(
                "\(String(reflecting: name)) is not an overlay name: use lowercase letters, digits and '-' (as host "
                    + "names), at most 63, starting with a letter or digit")
        }
        let top: FileStatus?
        do { top = try FileStatus.following(source) } catch { throw ClientError("cannot read \(source): \(error)") }
        guard top?.kind == .directory else { throw ClientError("\(source) is not a directory") }
        let kind: Overlay.Kind
        if (try? FileStatus.of(source + "/flake.nix"))??.kind == .regular {
            kind = .flake
        } else if (try? FileStatus.of(source + "/default.nix"))??.kind == .regular {
            kind = .module
        } else {
            throw ClientError(
                "\(source) has neither flake.nix (exposing nixosModules.default) nor default.nix (a NixOS module) at "
                    + "its top")
        }
        let lock = try takeLock()
        defer { withExtendedLifetime(lock) {} }
        var overlays = try loadRecord()
        let incoming = directory + "/.incoming-" + name
        let digest: String
        do {
            try FileIO.ensureDirectory(directory, mode: 0o700)
            try FileIO.removeTree(incoming)
            var copy = TreeCopy(source: source, limits: limits)
            try copy.copy(to: incoming)
            digest = copy.digest()
        } catch let refusal as ClientError {
            try? FileIO.removeTree(incoming)
            throw refusal
        } catch {
            try? FileIO.removeTree(incoming)
            throw ClientError("cannot copy \(source) into \(directory): \(error)")
        }
        let overlay = Overlay(name: name, digest: digest, kind: kind, addedAt: UTCTime.iso(time))
        let target = path(of: name)
        let old = directory + "/.old-" + name
        var placed = false
        do {
            // Set aside, then dropped once the new copy is recorded; a crash in between leaves it here, so
            // the copy is put back first if it is still missing.
            if try FileStatus.of(target) == nil, try FileStatus.of(old) != nil { try FileIO.rename(old, to: target) }
            try FileIO.removeTree(old)
            if (try FileStatus.of(target)) != nil { try FileIO.rename(target, to: old) }
            try FileIO.renameDurably(incoming, to: target)
            placed = true
            overlays.removeAll { $0.name == name }
            overlays.append(overlay)
            try save(overlays)
            try? FileIO.removeTree(old)
        } catch {
            // Back as it was: the recorded copy in place, the new one gone.
            if placed { try? FileIO.rename(target, to: incoming) }
            try? FileIO.removeTree(incoming)
            if (try? FileStatus.of(target)) ?? nil == nil { try? FileIO.rename(old, to: target) }
            throw ClientError("cannot record the overlay \(name) in \(stateDirectory): \(error)")
        }
        return overlay
    }

    /// Removes the overlay `name` from the record, then its copy.
    public func remove(name: String) throws(ClientError) {
        guard HostName.isValid(name) else { throw ClientError("\(String(reflecting: name)) is not an overlay name") }
        let lock = try takeLock()
        defer { withExtendedLifetime(lock) {} }
        var overlays = try loadRecord()
        guard overlays.contains(where: { $0.name == name }) else {
            throw ClientError("there is no overlay \(name) (see `fleet-client overlay list`)")
        }
        overlays.removeAll { $0.name == name }
        do {
            try save(overlays)
            try FileIO.removeTree(path(of: name))
        } catch {
            throw ClientError("cannot remove the overlay \(name) from \(stateDirectory): \(error)")
        }
    }

    private func save(_ overlays: [Overlay]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let bytes = Array(try encoder.encode(Record(overlays: overlays.sorted { $0.name < $1.name }))) + [0x0a]
        try FileIO.writeAtomically(bytes, to: recordPath, mode: 0o600)
    }

    /// The run lock: no run builds while the overlays change, and no change waits behind a run.
    private func takeLock() throws(ClientError) -> FileLock {
        let lockPath = stateDirectory + "/lock"
        let lock: FileLock?
        do {
            try FileIO.createDirectories(stateDirectory, mode: 0o755)
            lock = try FileLock.acquire(lockPath, wait: false)
        } catch {
            throw ClientError(
                "cannot prepare the state directory \(stateDirectory): \(error)", systemError: error.errno)
        }
        guard let lock else {
            throw ClientError("a fleet-client run holds \(lockPath); try again when it has finished")
        }
        return lock
    }
}

/// Copies a directory tree entry by entry (no link is followed), refusing what an overlay may not hold, and
/// hashes what it copied.
private struct TreeCopy {
    let source: String
    let limits: OverlayStore.Limits
    private var entries = 0
    private var bytes: Int64 = 0
    /// One line per entry: `d <path>`, `f <path> <x|-> <sha256>`, `l <path> <target>`.
    private var lines: [String] = []

    init(source: String, limits: OverlayStore.Limits) {
        self.source = source
        self.limits = limits
    }

    func digest() -> String {
        var hasher = SHA256Hasher()
        for line in lines.sorted() { hasher.update(line + "\n") }
        return hasher.finalizeHex()
    }

    mutating func copy(to target: String) throws {
        try FileIO.createNewDirectory(target, mode: 0o700)
        try copyDirectory("", into: target)
    }

    private mutating func copyDirectory(_ relative: String, into target: String) throws {
        let from = relative.isEmpty ? source : source + "/" + relative
        for name in try FileIO.listDirectory(from).sorted() {
            let path = relative.isEmpty ? name : relative + "/" + name
            entries += 1
            guard entries <= limits.entries else {
                throw ClientError(
                    "\(source) holds more than \(limits.entries) entries: too many for an overlay; nothing was added")
            }
            guard let status = try FileStatus.of(source + "/" + path) else { continue }
            let destination = target + "/" + name
            switch status.kind {
            case .directory:
                try FileIO.createNewDirectory(destination, mode: 0o700)
                lines.append("d \(path)")
                try copyDirectory(path, into: destination)
            case .regular:
                let remaining = limits.bytes - bytes
                guard status.size <= remaining else { throw tooBig() }
                let content = try FileIO.readNoFollow(source + "/" + path, limit: Int(remaining))
                bytes += Int64(content.count)
                let executable = status.permissions & 0o100 != 0
                try FileIO.writeAtomically(content, to: destination, mode: executable ? 0o700 : 0o600, durable: false)
                lines.append("f \(path) \(executable ? "x" : "-") \(SHA256Hasher.hex(content))")
            case .symbolicLink:
                let linkTarget = try FileIO.readLink(source + "/" + path)
                guard Self.staysInside(linkTarget, from: relative) else {
                    throw ClientError(
                        "\(source)/\(path) is a link to \(linkTarget), outside the overlay: copy what it needs into "
                            + "the overlay instead; nothing was added")
                }
                guard symlink(linkTarget, destination) == 0 else {
                    throw ClientError("cannot create the link \(destination): \(String(cString: strerror(errno)))")
                }
                lines.append("l \(path) \(linkTarget)")
            case .other:
                let what = status.isFIFO ? "a fifo" : status.isSocket ? "a socket" : "a device or other special file"
                throw ClientError("\(source)/\(path) is \(what), which an overlay may not hold; nothing was added")
            }
        }
    }

    private func tooBig() -> ClientError {
        ClientError("\(source) holds more than \(limits.bytes) bytes: too big for an overlay; nothing was added")
    }

    /// Whether a relative link target, read from the directory `relative` of the overlay, stays inside it.
    static func staysInside(_ target: String, from relative: String) -> Bool {
        guard !target.isEmpty, !target.hasPrefix("/") else { return false }
        var components = relative.split(separator: "/").map(String.init)
        for component in target.split(separator: "/") {
            switch component {
            case ".": continue
            case "..":
                guard !components.isEmpty else { return false }
                components.removeLast()
            default: components.append(String(component))
            }
        }
        return true
    }
}
