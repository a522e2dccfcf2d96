import ArgumentParser
import FleetFiles
import FleetProtocol
import Foundation

/// `fleet-client`: the host side. `run` (pull and apply) arrives with the client issue; today it can
/// verify a manifest the way a run will.
@main
struct FleetClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet-client",
        abstract: "Pull and apply this host's NixOS configuration from the fleet server.",
        subcommands: [VerifyManifest.self]
    )
}

extension FleetClientCommand {
    struct VerifyManifest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify a manifest file's signature and host, and print its payload.")

        @Argument(help: "The manifest file (as fetched from the chroot).")
        var file: String

        @Option(help: "The fleet public key, name:base64 (the server's signing.pub).")
        var publicKey: String

        @Option(help: "The host this manifest must be for.")
        var host: String

        func run() async throws {
            let key = try VerifyingKey(nixFormat: publicKey)
            let expected = try HostName(host)
            let manifest = try Manifest.verify(try FileIO.readNoFollow(file, limit: Manifest.sizeLimit), with: key)
            guard manifest.host == expected else {
                throw ClientError(description: "\(file) is for host \(manifest.host), not \(expected): refused")
            }
            print(String(decoding: try manifest.payload(), as: UTF8.self))
        }
    }
}

/// A refusal whose description is what the user sees.
struct ClientError: Error, CustomStringConvertible {
    let description: String
}
