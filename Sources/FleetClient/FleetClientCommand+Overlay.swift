import ArgumentParser
import ClientStateStore
import FleetProtocol
import Foundation
import Glibc
import HostAgent

extension FleetClientCommand {
    /// `fleet-client overlay add|remove|list`: host-local NixOS modules built on top of the fleet's system.
    struct OverlayCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "overlay",
            abstract: "Add, remove or list host-local overlays built on top of the fleet's system.",
            discussion: """
                An overlay is a directory holding a flake that exposes nixosModules.default, or a default.nix \
                module. It is copied into the state directory (so its source may be deleted), checked (no links \
                leaving it, no special files, size caps) and recorded with its digest; every run then builds the \
                fleet's configuration extended with the overlays' modules. Only root can add or remove overlays.
                """,
            subcommands: [Add.self, Remove.self, List.self])
    }
}

extension FleetClientCommand.OverlayCommand {
    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy DIR into the state as the overlay NAME (replacing one of that name).")

        @OptionGroup var config: ConfigOption
        @Argument(help: "The overlay's name (lowercase letters, digits and '-', as host names).") var name: String
        @Argument(help: "The overlay's directory (a flake with nixosModules.default, or a default.nix).")
        var directory: String
        @Flag(help: "Run at once, applying the current generation with the overlays (exit statuses as `run`'s).")
        var apply = false

        func run() async throws {
            try requireRoot()
            let configuration = try config.load()
            let overlay = try OverlayStore(stateDirectory: configuration.stateDirectory)
                .add(name: name, from: directory)
            print("added overlay \(overlay.name) (\(overlay.kind.rawValue), sha256 \(overlay.digest))")
            if apply { try await applyNow(configuration) }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove the overlay NAME.")

        @OptionGroup var config: ConfigOption
        @Argument(help: "The overlay's name.") var name: String
        @Flag(help: "Run at once, applying the current generation without it (exit statuses as `run`'s).")
        var apply = false

        func run() async throws {
            try requireRoot()
            let configuration = try config.load()
            try OverlayStore(stateDirectory: configuration.stateDirectory).remove(name: name)
            print("removed overlay \(name)")
            if apply { try await applyNow(configuration) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the overlays in effect.")

        @OptionGroup var config: ConfigOption
        @Flag(help: "Print them as JSON.") var json = false

        func run() async throws {
            let configuration = try config.load()
            let overlays = try OverlayStore(stateDirectory: configuration.stateDirectory).load()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(overlays), as: UTF8.self))
                return
            }
            guard !overlays.isEmpty else {
                print("no overlays: this host runs the fleet's system as published")
                return
            }
            let width = overlays.map(\.name.count).max() ?? 4
            print(
                "NAME".padding(toLength: max(width, 4), withPad: " ", startingAt: 0)
                    + "  KIND    ADDED                 SHA256")
            for overlay in overlays {
                print(
                    overlay.name.padding(toLength: max(width, 4), withPad: " ", startingAt: 0) + "  "
                        + overlay.kind.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0) + "  "
                        + overlay.addedAt.padding(toLength: 20, withPad: " ", startingAt: 0) + "  " + overlay.digest)
            }
        }
    }
}

/// Overlays change what this machine runs as root: only root may change them (the page and the fleet cannot).
private func requireRoot() throws {
    guard geteuid() == 0 else {
        throw ClientError("only root can add or remove overlays (run it with sudo); nothing was changed")
    }
}

/// `--apply`: a normal run, which applies the current generation again because the overlays changed.
private func applyNow(_ configuration: ClientConfiguration) async throws {
    let log = RunLog(host: configuration.host.value, limit: configuration.logLimitBytes)
    let result = try await ClientRun(configuration: configuration, log: log).run()
    throw ExitCode(result.outcome.exitStatus)
}
