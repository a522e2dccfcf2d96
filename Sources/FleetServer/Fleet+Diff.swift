import ArgumentParser
import BuildGate
import CommandRunner
import FleetFiles
import FleetProtocol
import FleetReview
import Foundation
import Inventory
import NixKit
import Publishing
import ServerStore

extension Fleet {
    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what the next publish would change for a host.",
            discussion: """
                Files added, removed and changed against the published snapshot, with a unified diff for text \
                (secrets: names only); and, when both the published generation and the current tree were built \
                (fleet build), the closure difference from `nix store diff-closures`.
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The host.")
        var host: String

        @Flag(help: "List the changed files only, without their diffs.")
        var stat = false

        @Flag(help: "Print JSON for scripts (file list and closure difference, no text diffs).")
        var json = false

        struct Output: Encodable {
            var host: String
            var publishedGeneration: UInt64?
            var files: [PublishedTreeDiff.File]
            var publishedSystem: String?
            var nextSystem: String?
            var closureDifference: String?
        }

        func run() async throws {
            let configuration = try global.loadConfiguration()
            let selected = try configuration.selecting([host])[0]
            let resolver = try HostTreeResolver(repository: configuration.repository)
            let tree: ResolvedTree
            do { tree = try resolver.resolve(selected) } catch {
                // A fact about the repository, found while running: not a usage error.
                throw CommandFailure(
                    "\(selected.name) would be refused: \(error.problems.map(\.description).joined(separator: "; "))")
            }
            let layout = ChrootLayout(root: configuration.server.chrootRoot, host: selected.name)
            try await PublishedTreeDiff.withComparison(tree, with: layout) { diff in
                try await show(diff, tree: tree, layout: layout, configuration: configuration)
            }
        }

        /// Prints the comparison, while its published copies exist.
        func show(
            _ diff: PublishedTreeDiff, tree: ResolvedTree, layout: ChrootLayout, configuration: FleetConfiguration
        ) async throws {
            let hostName = tree.host
            let manifest = (try? FileIO.readNoFollow(layout.manifest, limit: Manifest.sizeLimit)).flatMap {
                try? Manifest.readUnverified($0)
            }
            let builder = SystemBuilder(stateDirectory: configuration.server.stateDirectory)
            let next = builder.existingResult(for: hostName, files: tree.buildInputs)
            var closure: String?
            if let old = manifest?.toplevel, let next, (try? FileStatus.of(old)) ?? nil != nil {
                let output = try await Command.run("nix", Nix.flakeFlags + ["store", "diff-closures", old, next])
                closure =
                    output.succeeded ? output.standardOutput : "nix store diff-closures failed: \(output.standardError)"
            }
            if json {
                return try printJSON(
                    Output(
                        host: hostName.value, publishedGeneration: diff.publishedGeneration, files: diff.files,
                        publishedSystem: manifest?.toplevel, nextSystem: next, closureDifference: closure))
            }
            print(
                "\(hostName): against "
                    + (diff.publishedGeneration.map { "published generation \($0)" } ?? "nothing published yet"))
            if diff.files.isEmpty { print("no file changes") }
            // File names and contents come from the repository (and its hosts' secrets' names): printed as
            // `fleet status` prints host-written text, so a newline or an escape sequence in them cannot forge
            // lines or rewrite the terminal.
            for file in diff.files {
                print(
                    "  \(file.change.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(Self.shown(file.path))\(file.isSecret ? "   (secret: content not shown)" : "")"
                )
            }
            if !stat {
                for file in diff.files where !file.isSecret {
                    let old = file.publishedCopy ?? "/dev/null"
                    let new = file.source ?? "/dev/null"
                    let name = Self.shown(file.path)
                    guard Self.isText(old), Self.isText(new) else {
                        print("\n\(name): binary file \(file.change.rawValue)")
                        continue
                    }
                    let output = try await Command.run(
                        "diff", ["-u", "--label", "published/\(name)", "--label", "next/\(name)", old, new])
                    print("\n" + TerminalText.block(output.standardOutput), terminator: "")
                }
            }
            print("")
            switch (manifest?.toplevel, next) {
            case (let old?, let new?):
                print("closure: \(old) -> \(new)")
                print(closure ?? "(the published system is no longer in the store)")
            case (nil, _):
                print("closure: the published generation was not built on the server (build = true in fleet.toml)")
            case (_, nil):
                print("closure: the current tree is not built yet; `fleet build \(hostName)` builds it")
            }
        }

        /// A file name on one line, control characters escaped (no length cut: names are the point here).
        static func shown(_ path: String) -> String { TerminalText.line(path, limit: Int.max) }

        /// Text means UTF-8 without NUL bytes in the first 64 KiB, up to 16 MiB (and /dev/null).
        static func isText(_ path: String) -> Bool {
            if path == "/dev/null" { return true }
            guard let bytes = try? FileIO.readNoFollow(path, limit: 16 << 20) else { return false }
            return !bytes.prefix(64 << 10).contains(0) && String(validating: bytes, as: UTF8.self) != nil
        }
    }
}
