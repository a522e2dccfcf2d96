import FleetFiles
import FleetProtocol
import Foundation

/// What `fleet init` writes: a working fleet repository skeleton, into a new or empty directory only.
public enum RepositoryScaffold {
    /// What `create` did.
    public struct Outcome: Sendable, Equatable {
        /// Paths it created, relative to the repository.
        public var created: [String] = []
        /// Paths that were there and were left as they are.
        public var kept: [String] = []
        /// Why the directory counts as an existing repository (nothing was written into it), or nil.
        public var existing: String?
    }

    /// Creates the skeleton under `directory`, with `stateDirectory` and `chrootRoot` (absolute, checked) in its
    /// fleet.toml when given. An existing repository (a fleet.toml, or anything in `hosts/`) gets nothing: no
    /// example host next to real ones, and no file replaced.
    public static func create(at directory: String, stateDirectory: String? = nil, chrootRoot: String? = nil)
        throws -> Outcome
    {
        var outcome = Outcome()
        let root = FileIO.absolute(directory)
        for (flag, path) in [("--state-dir", stateDirectory), ("--chroot-root", chrootRoot)] {
            if let path, let problem = FleetConfiguration.Server.problem(withPath: path) {
                throw InventoryError("\(flag) \(quoted(path)): \(problem)")
            }
        }
        let hosts = (try? FileIO.listDirectory(root + "/hosts")) ?? []
        if FileManager.default.fileExists(atPath: root + "/" + FleetConfiguration.fileName) {
            outcome.existing = "\(root)/\(FleetConfiguration.fileName) exists"
        } else if !hosts.isEmpty {
            outcome.existing = "\(root)/hosts/ holds \(hosts.sorted().joined(separator: ", "))"
        }
        if outcome.existing != nil {
            let entries = (try? FileIO.listDirectory(root)) ?? []
            outcome.kept = ([FleetConfiguration.fileName, ".gitignore", "common", "hosts", "secrets"]).filter {
                entries.contains($0)
            }
            return outcome
        }
        try FileIO.createDirectories(root)
        for folder in ["common", "hosts/example", "secrets/example"] {
            let path = root + "/" + folder
            if FileManager.default.fileExists(atPath: path) { continue }
            try FileIO.createDirectories(path)
            outcome.created.append(folder + "/")
        }
        try FileIO.ensureDirectory(root + "/secrets", mode: 0o700)
        for (path, template) in files {
            var text = template
            if path == FleetConfiguration.fileName {
                // The key goes where --state-dir says: fleet.toml must say the same, or the next publish
                // looks for it in /var/lib/fleet.
                if let stateDirectory {
                    text = text.replacingOccurrences(
                        of: "state_dir = \"/var/lib/fleet\"", with: "state_dir = \"\(stateDirectory)\"")
                }
                if let chrootRoot {
                    text = text.replacingOccurrences(
                        of: "chroot_root = \"/srv/fleet\"", with: "chroot_root = \"\(chrootRoot)\"")
                }
            }
            let full = root + "/" + path
            if FileManager.default.fileExists(atPath: full) {
                outcome.kept.append(path)
            } else {
                try FileIO.writeAtomically(Array(text.utf8), to: full, mode: 0o644)
                outcome.created.append(path)
            }
        }
        let link = root + "/hosts/example/common"
        if (try? FileStatus.of(link)) == nil {
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "../../common")
            outcome.created.append("hosts/example/common -> ../../common")
        }
        return outcome
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
            # roles = ["web"]                # modules from roles/web/default.nix, imported by ./fleet-roles.nix

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
                  # fleet-roles.nix is written by fleet publish when fleet.toml gives the host roles.
                  modules = [ ./configuration.nix ./common/base.nix ]
                    ++ (if builtins.pathExists ./fleet-roles.nix then [ ./fleet-roles.nix ] else [ ]);
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
