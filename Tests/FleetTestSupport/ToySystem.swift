import Foundation

/// A host flake whose NixOS-shaped system is built by a shell script of the test's, for what the example
/// fleet's toy systems cannot do (log megabytes, hang, fail for lack of space, fill a disk).
public enum ToySystem {
    /// `flake.nix` text for `host`: the builder runs `script` (lines of `/bin/sh`), then makes a system whose
    /// `switch-to-configuration` records its activation in `$FLEET_ACTIVATION_LOG` as the toy systems do. A
    /// nonce makes it a new derivation each time: one already in the store would not be built (or log) again.
    public static func flake(host: String, name: String, script: String) -> String {
        let body = script.split(separator: "\n", omittingEmptySubsequences: false)
            .map { "            " + $0 }.joined(separator: "\n")
        return """
            {
              outputs = { self }: {
                nixosConfigurations.\(host).config.system.build.toplevel = derivation {
                  name = "nixos-system-\(host)-\(name)";
                  nonce = "\(UUID().uuidString)";
                  system = "x86_64-linux";
                  builder = "/bin/sh";
                  args = [ "-c" ''
            \(body)
                    /bin/mkdir -p $out/bin
                    switch=$out/bin/switch-to-configuration
                    printf '#!/bin/sh\\necho "$1 \(host) '$out'" >> "$FLEET_ACTIVATION_LOG"\\n' > $switch
                    /bin/chmod +x $switch
                  '' ];
                };
              };
            }

            """
    }
}
