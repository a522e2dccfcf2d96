import CommandRunner
import Foundation
import HostAgent
import Testing

/// The page's sandbox is written twice, for the two kinds of host: `SystemdUnits.pageSandbox` (install-units) and
/// `pageHardening` in nixos/shared.nix (the NixOS module). They set the same directives.
@Suite("The page's sandbox on NixOS and elsewhere")
struct PageSandboxParityTests {
    @Test func installUnitsAndTheNixOSModuleSandboxThePageWithTheSameDirectives() async throws {
        let expression = "builtins.attrNames (import \(NixModulesTests.repository)/nixos/shared.nix).pageHardening"
        let output = try await NixModulesTests.nix(
            "nix-instantiate", ["--eval", "--strict", "--json", "--expr", expression])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let nixDirectives = Set(try JSONDecoder().decode([String].self, from: Data(output.standardOutput.utf8)))
        // User= names the dynamic user for polkit; NixOS names it after the unit, which is the same name.
        let swiftDirectives = Set(
            SystemdUnits.pageSandbox.compactMap { $0.split(separator: "=").first.map(String.init) }
        ).subtracting(["User"])
        #expect(nixDirectives.count > 20)
        let onlyNix = nixDirectives.subtracting(swiftDirectives).sorted()
        let onlySwift = swiftDirectives.subtracting(nixDirectives).sorted()
        #expect(
            onlyNix.isEmpty && onlySwift.isEmpty,
            "only in nixos/shared.nix: \(onlyNix); only in SystemdUnits: \(onlySwift)")
    }
}
