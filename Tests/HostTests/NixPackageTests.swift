import CommandRunner
import FleetTestSupport
import Foundation
import Testing

/// The flake's package (nix/package.nix) and its SwiftPM pins (nix/swiftpm/, scripts/swiftpm2nix).
///
/// Nothing here can fetch nixpkgs or the dependencies, so the package is not built: it is evaluated with a
/// stand-in for nixpkgs (nix/test/stand-in-pkgs.nix) and what it asks for is checked, above all that the
/// dependencies it fetches are exactly Package.resolved's, at the same revisions.
@Suite("The Nix package")
struct NixPackageTests {
    static let repository = NixModulesTests.repository

    /// One dependency as the package pins it (passthru.swiftpmPins).
    struct Pin: Decodable, Equatable {
        let identity: String
        let location: String
        let revision: String
        let version: String?
        let hash: String?
    }

    struct Evaluation: Decodable {
        let name: String
        let pname: String
        let outputs: [String]
        let nativeBuildInputs: [String]
        let buildInputs: [String]
        let pins: [Pin]
        let configurePhase: String
        let overlayClient: String
    }

    /// Package.resolved (not committed: `swift build` writes it), as SwiftPM wrote it for this checkout.
    struct Resolved: Decodable {
        struct Pin: Decodable {
            struct State: Decodable {
                let revision: String
                let version: String?
            }

            let identity: String
            let location: String
            let state: State
        }

        let pins: [Pin]
    }

    /// Evaluates nix/package.nix from `root` (a copy of the repository's nix/ or the repository itself).
    static func evaluate(root: String = repository, swiftVersion: String = "6.2.4") async throws -> CommandOutput {
        let expression = """
            let
              pkgs = import \(root)/nix/test/stand-in-pkgs.nix { swiftVersion = "\(swiftVersion)"; };
              fleet = pkgs.callPackage \(root)/nix/package.nix { };
              overlay = ((import \(root)/flake.nix).outputs { self = { }; nixpkgs = { }; }).overlays.default;
              overlaid = pkgs // overlay overlaid pkgs;
              names = map (p: p.name);
            in {
              inherit (fleet) name pname outputs configurePhase;
              nativeBuildInputs = names fleet.nativeBuildInputs;
              buildInputs = names fleet.buildInputs;
              pins = fleet.passthru.swiftpmPins;
              overlayClient = overlaid.fleet-client.outputName;
            }
            """
        return try await NixModulesTests.nix("nix-instantiate", ["--eval", "--strict", "--json", "--expr", expression])
    }

    @Test func thePackageBuildsBothProgramsFromPackageResolvedsPins() async throws {
        let output = try await Self.evaluate()
        #expect(output.exitCode == 0, "\(output.standardError)")
        let evaluation = try JSONDecoder().decode(Evaluation.self, from: Data(output.standardOutput.utf8))
        #expect(evaluation.pname == "fleet" && evaluation.name == "fleet-0-unstable")
        #expect(evaluation.outputs == ["out", "client"])
        #expect(evaluation.overlayClient == "client", "overlays.default's fleet-client is the client output")
        #expect(evaluation.nativeBuildInputs == ["swift-6.2.4", "swiftpm-6.2.4", "pkg-config-0.29.2"])
        #expect(
            Set(evaluation.buildInputs.map { $0.split(separator: "-").dropLast().joined(separator: "-") })
                == ["libssh", "sqlite", "libarchive"])

        let resolvedPath = Self.repository + "/Package.resolved"
        let data = try #require(
            FileManager.default.contents(atPath: resolvedPath),
            "\(resolvedPath) is missing: `swift package resolve` writes it")
        let resolved = try JSONDecoder().decode(Resolved.self, from: data)
        let expected = resolved.pins.map {
            Pin(
                identity: $0.identity.lowercased(), location: $0.location, revision: $0.state.revision,
                version: $0.state.version, hash: nil)
        }.sorted { $0.identity < $1.identity }
        let pinned = evaluation.pins.map {
            Pin(
                identity: $0.identity.lowercased(), location: $0.location, revision: $0.revision, version: $0.version,
                hash: nil)
        }.sorted { $0.identity < $1.identity }
        #expect(
            pinned == expected,
            "nix/swiftpm/ does not pin Package.resolved's dependencies: run scripts/swiftpm2nix (and --prefetch online)"
        )
        for pin in evaluation.pins {
            let hash = try #require(pin.hash, "\(pin.identity) has no hash")
            #expect(hash.hasPrefix("sha256-") && hash.count == 51, "\(pin.identity): \(hash)")
            // Each dependency is linked where SwiftPM looks for its checkout.
            #expect(
                evaluation.configurePhase.contains("-source-\(pin.revision)' '.build/checkouts/"), "\(pin.identity)")
        }
        #expect(evaluation.configurePhase.contains("./.build/workspace-state.json"))
    }

    /// A hash that could not be computed here is lib.fakeHash's value and says so, never a made-up one.
    @Test func aHashNotComputedIsMarkedAsSuch() throws {
        let text = try String(contentsOfFile: Self.repository + "/nix/swiftpm/default.nix", encoding: .utf8)
        let fakeHash = "sha256-" + String(repeating: "A", count: 43) + "="
        for line in text.split(separator: "\n") where line.contains(" = \"sha256-") {
            #expect(
                line.contains(fakeHash) == line.contains("# not computed: scripts/swiftpm2nix --prefetch"),
                "\(line)")
        }
    }

    @Test func aSwiftOlderThanSixPointTwoIsRefusedByName() async throws {
        let output = try await Self.evaluate(swiftVersion: "5.10.1")
        #expect(output.exitCode != 0)
        #expect(
            output.standardError.contains("fleet needs Swift 6.2 or later")
                && output.standardError.contains("this nixpkgs has Swift 5.10.1"), "\(output.standardError)")
    }

    /// A pin file that lost a dependency's hash names the dependency and the script that writes it.
    @Test func aDependencyWithoutAHashIsNamed() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try await NixModulesTests.copy(["nix", "flake.nix"], into: directory.path)
        let pins = directory.path("nix/swiftpm/default.nix")
        let text = try String(contentsOfFile: pins, encoding: .utf8)
        let kept = text.split(separator: "\n", omittingEmptySubsequences: false).filter {
            !$0.contains("\"swift-nio\" = ")
        }
        try kept.joined(separator: "\n").write(toFile: pins, atomically: true, encoding: .utf8)
        let output = try await Self.evaluate(root: directory.path)
        #expect(output.exitCode != 0)
        #expect(
            output.standardError.contains("nix/swiftpm/default.nix has no hash for swift-nio: run scripts/swiftpm2nix"),
            "\(output.standardError)")
    }
}
