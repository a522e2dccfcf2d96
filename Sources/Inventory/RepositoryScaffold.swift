import FleetFiles
import Foundation

/// What `fleet init` writes: a working fleet repository skeleton. Existing files are never overwritten.
public enum RepositoryScaffold {
    /// Creates the skeleton under `directory`; returns the paths it created and those it left alone.
    public static func create(at directory: String) throws -> (created: [String], kept: [String]) {
        var created: [String] = []
        var kept: [String] = []
        let root = FileManagerPaths.absolute(directory)
        try FileIO.createDirectories(root)
        for folder in ["common", "hosts/example", "secrets/example"] {
            let path = root + "/" + folder
            if FileManager.default.fileExists(atPath: path) { continue }
            try FileIO.createDirectories(path)
            created.append(folder + "/")
        }
        try FileIO.ensureDirectory(root + "/secrets", mode: 0o700)
        for (path, text) in files {
            let full = root + "/" + path
            if FileManager.default.fileExists(atPath: full) {
                kept.append(path)
            } else {
                try FileIO.writeAtomically(Array(text.utf8), to: full, mode: 0o644)
                created.append(path)
            }
        }
        let link = root + "/hosts/example/common"
        if (try? FileStatus.of(link)) == nil {
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "../../common")
            created.append("hosts/example/common -> ../../common")
        }
        return (created, kept)
    }

    static let files: [(String, String)] = [
        (
            "fleet.toml",
            """
            # The fleet inventory. `fleet hosts` shows it; `fleet publish` publishes it.

            [server]
            address = "fleet.example.org"    # what hosts connect to
            port = 22
            # host_key = "ssh-ed25519 AAAA…"  # this server's /etc/ssh/ssh_host_ed25519_key.pub, pinned by every host
            chroot_root = "/srv/fleet"
            state_dir = "/var/lib/fleet"

            [defaults]
            operation = "switch"             # switch, boot or test
            build = false                    # build on the server before publishing (the build gate)
            cache = false                    # ship a binary cache of the built closure

            [hosts.example]
            # key = "ssh-ed25519 AAAA…"      # the host's /etc/ssh/ssh_host_ed25519_key.pub
            # attribute = "example"          # nixosConfigurations.<attribute>, default the host name

            """
        ),
        (
            ".gitignore",
            """
            # Secrets never enter git (or the Nix store): fleet ships them beside each host's configuration.
            /secrets/

            """
        ),
        (
            "common/base.nix",
            """
            # Shared by every host that links common/ into its tree (hosts/<host>/common -> ../../common).
            { ... }:
            {
              services.openssh.enable = true;
              nix.settings.experimental-features = [ "nix-command" "flakes" ];
            }

            """
        ),
        (
            "hosts/example/flake.nix",
            """
            {
              inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";

              outputs = { self, nixpkgs }: {
                nixosConfigurations.example = nixpkgs.lib.nixosSystem {
                  system = "x86_64-linux";
                  modules = [ ./configuration.nix ./common/base.nix ];
                };
              };
            }

            """
        ),
        (
            "hosts/example/configuration.nix",
            """
            { ... }:
            {
              networking.hostName = "example";
              # Secrets arrive under /var/lib/fleet-client/secrets/, root 0400; refer to them by path, e.g.
              # services.foo.passwordFile = "/var/lib/fleet-client/secrets/foo-password";
              system.stateVersion = "24.05";
            }

            """
        ),
    ]
}
