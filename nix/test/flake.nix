# The stand-in nixpkgs as a flake, for evaluating the root flake offline:
#   nix eval --override-input nixpkgs path:<a copy of this directory> …
{
  outputs = { self }: {
    lib = import ./stand-in-lib.nix;
    legacyPackages = builtins.listToAttrs (map
      (system: { name = system; value = import ./stand-in-pkgs.nix { }; })
      [ "x86_64-linux" "aarch64-linux" ]);
  };
}
