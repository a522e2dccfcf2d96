import CommandRunner
import FleetFiles
public import FleetProtocol
import Foundation
public import Inventory
import NixKit

/// Builds hosts' configurations on the server — the build gate — from a staging copy of each resolved tree
/// with the secrets left out, so nothing secret can reach the server's Nix store either.
///
/// Layout under `<state_dir>/builds/<host>/`: `source-<digest>/` (the staged tree, reused while the tree is
/// unchanged), `result-<digest>` (the out-link, a GC root for the built system), `<time>-<digest>.log`.
public struct SystemBuilder: Sendable {
    public let stateDirectory: String
    /// Staged trees, results and logs kept per host besides the newest.
    public var keep = 3

    public init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
    }

    public func directory(for host: HostName) -> String { "\(stateDirectory)/builds/\(host)" }

    /// A file of the tree to build: where it goes in the staged tree and where its bytes are read from.
    public struct SourceFile: Sendable, Equatable {
        /// Relative to the tree's root, e.g. `flake.nix` or `common/base.nix`.
        public let path: String
        /// Where the bytes that were hashed come from.
        public enum Origin: Sendable, Equatable {
            /// A real file (never a link) in the repository.
            case file(String)
            /// A file fleet generated (`fleet-roles.nix`).
            case bytes([UInt8])
        }

        public let origin: Origin
        public let sha256: String
        public let executable: Bool

        public init(path: String, source: String, sha256: String, executable: Bool) {
            self.init(path: path, origin: .file(source), sha256: sha256, executable: executable)
        }

        public init(path: String, contents: [UInt8], sha256: String, executable: Bool) {
            self.init(path: path, origin: .bytes(contents), sha256: sha256, executable: executable)
        }

        init(path: String, origin: Origin, sha256: String, executable: Bool) {
            self.path = path
            self.origin = origin
            self.sha256 = sha256
            self.executable = executable
        }
    }

    /// What a build depends on: every file's path, mode and content (sorted by path).
    public static func treeDigest(_ files: [SourceFile]) -> String {
        var hasher = SHA256Hasher()
        hasher.update("fleet-build-v1\n")
        for file in files.sorted(by: { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }) {
            hasher.update("f \(file.path) \(file.executable ? "x" : "-") \(file.sha256)\n")
        }
        return hasher.finalizeHex()
    }

    /// The out-link of an earlier build of these files, if one is still in the store.
    public func existingResult(for host: HostName, files: [SourceFile]) -> String? {
        let link = "\(directory(for: host))/result-\(Self.treeDigest(files).prefix(16))"
        guard let toplevel = try? FileIO.readLink(link), (try? FileStatus.of(toplevel)) ?? nil != nil else {
            return nil
        }
        return toplevel
    }

    /// Builds `nixosConfigurations.<attribute>.config.system.build.toplevel` of the host's tree (or, without a
    /// flake, `<nixpkgs/nixos>` with its configuration.nix), reusing an earlier result of the same tree.
    public func build(_ host: HostConfiguration, files: [SourceFile]) async -> BuildResult {
        let started = Date()
        let digest = Self.treeDigest(files)
        let short = String(digest.prefix(16))
        let directory = directory(for: host.name)
        var result = BuildResult(
            host: host.name, status: .failed, toplevel: nil, log: nil, reason: nil, seconds: 0, treeDigest: digest)
        let outLink = "\(directory)/result-\(short)"
        if let existing = try? FileIO.readLink(outLink), (try? FileStatus.of(existing)) ?? nil != nil {
            result.status = .reused
            result.toplevel = existing
            result.seconds = Date().timeIntervalSince(started)
            return result
        }
        let source = "\(directory)/source-\(short)"
        let log = "\(directory)/\(UTCTime.compact(started, milliseconds: false))-\(short).log"
        result.log = log
        do {
            try FileIO.createDirectories(directory, mode: 0o700)
            try stage(files, into: source)
        } catch {
            result.reason = "cannot stage the tree in \(source): \(error)"
            writeLog(log, "staging failed: \(error)\n")
            result.seconds = Date().timeIntervalSince(started)
            return result
        }
        guard
            let (executable, arguments) = SystemBuild.invocation(
                tree: source, attribute: host.attribute, outLink: outLink)
        else {
            result.reason = "the host's tree has neither flake.nix nor configuration.nix at its top"
            writeLog(log, "\(result.reason ?? "")\n")
            result.seconds = Date().timeIntervalSince(started)
            return result
        }
        let commandLine = ([executable] + arguments).joined(separator: " ")
        // Nix writes straight into the log as it builds: a build that logs megabytes is still a success.
        writeLog(log, "$ \(commandLine)\n")
        do {
            let status = try await Command.run(executable, arguments, appendingOutputTo: log)
            writeLog(log, "(exit status \(status))\n", appending: true)
            if status == 0, let toplevel = try? FileIO.readLink(outLink), toplevel.hasPrefix("/nix/store/") {
                result.status = .built
                result.toplevel = toplevel
            } else {
                result.reason =
                    "\(executable) exited with status \(status)" + Nix.cause(ofFailure: Command.tail(ofFile: log))
            }
        } catch {
            writeLog(log, "\(error)\n", appending: true)
            result.reason = "\(error)"
        }
        result.seconds = Date().timeIntervalSince(started)
        prune(directory)
        return result
    }

    /// Copies the files into `directory` (made anew unless a complete copy is there).
    private func stage(_ files: [SourceFile], into directory: String) throws {
        let marker = directory + "/.fleet-staged"
        if try FileStatus.of(marker) != nil { return }
        try FileIO.removeTree(directory)
        try FileIO.createDirectories(directory, mode: 0o755)
        for file in files {
            let target = directory + "/" + file.path
            try FileIO.createDirectories(FileIO.split(target).directory, mode: 0o755)
            let bytes: [UInt8]
            switch file.origin {
            case .bytes(let contents): bytes = contents
            case .file(let source):
                bytes = try FileIO.readNoFollow(source, limit: 1 << 30)
                guard SHA256Hasher.hex(bytes) == file.sha256 else {
                    throw FileSystemError("read", path: source, detail: "changed after it was resolved; publish again")
                }
            }
            try FileIO.writeAtomically(bytes, to: target, mode: file.executable ? 0o755 : 0o644)
        }
        try FileIO.writeAtomically([], to: marker, mode: 0o644)
    }

    /// Starts the log (or, `appending`, adds to it): fleet's own lines around what Nix writes into it.
    private func writeLog(_ path: String, _ text: String, appending: Bool = false) {
        if appending {
            try? FileIO.append(Array(text.utf8), to: path)
        } else {
            try? FileIO.writeAtomically(Array(text.utf8), to: path, mode: 0o600)
        }
    }

    /// Keeps the newest `keep` staged trees, results and logs (by modification time).
    private func prune(_ directory: String) {
        guard let names = try? FileIO.listDirectory(directory) else { return }
        for prefix in ["source-", "result-"] {
            let dated = names.filter { $0.hasPrefix(prefix) }.compactMap { name -> (String, Int64)? in
                guard let status = try? FileStatus.of(directory + "/" + name) else { return nil }
                return (name, status.modificationSeconds)
            }.sorted { $0.1 > $1.1 }
            for (name, _) in dated.dropFirst(keep) { try? FileIO.removeTree(directory + "/" + name) }
        }
        let logs = names.filter { $0.hasSuffix(".log") }.sorted(by: >)
        for name in logs.dropFirst(keep * 4) { _ = try? FileIO.removeFile(directory + "/" + name) }
    }
}
