import FleetFiles

/// How a NixOS system is built from a host's tree, the same on the server (the build gate) and on the host.
public enum SystemBuild {
    /// The command that builds `nixosConfigurations.<attribute>.config.system.build.toplevel` of the tree's
    /// flake, or, without a flake, `<nixpkgs/nixos>` with `nixos-config` set to the tree's configuration.nix (as
    /// NIX_PATH resolves it), leaving the result at `outLink`; nil when the tree has neither at its top.
    public static func invocation(tree: String, attribute: String, outLink: String) -> (
        executable: String, arguments: [String]
    )? {
        if (try? FileStatus.of(tree + "/flake.nix"))??.kind == .regular {
            return (
                "nix",
                Nix.flakeFlags + [
                    "build", "path:\(tree)#nixosConfigurations.\"\(attribute)\".config.system.build.toplevel",
                    "--out-link", outLink, "--no-update-lock-file", "--print-build-logs",
                ]
            )
        }
        if (try? FileStatus.of(tree + "/configuration.nix"))??.kind == .regular {
            return (
                "nix-build",
                [
                    "<nixpkgs/nixos>", "-A", "system", "-I", "nixos-config=\(tree)/configuration.nix", "--out-link",
                    outLink,
                ]
            )
        }
        return nil
    }
}
