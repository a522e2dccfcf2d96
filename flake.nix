# fleet's NixOS modules and packages, for the flakes that configure a fleet's server and hosts:
#
#   inputs.fleet.url = "git+https://…/fleet";
#   inputs.fleet.inputs.nixpkgs.follows = "nixpkgs";
#   modules = [ fleet.nixosModules.client { services.fleet-client = { enable = true; … }; } ];
#
# The modules use the nixpkgs of the configuration that imports them, never this flake's input: their
# `package` defaults to the configuration's `pkgs.fleet-client` (this flake's overlays.default) or else to
# ./nix/package.nix built with that configuration's pkgs. The `nixpkgs` input is only for `packages` (and
# `nix build .#fleet`); with `follows`, a host's lock file holds one nixpkgs. flake.lock does not pin it yet
# (nothing here could fetch nixpkgs): `nix flake lock` does, once, online. It is only a file at the root of
# this repository: the example fleet's hosts (hosts/*/flake.nix) are flakes of their own, and `fleet publish`
# publishes hosts/<host>/, never this file. See docs/deployment.md.
{
  description = "fleet: a pull-based NixOS fleet manager (services.fleet-client, services.fleet-server, packages)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      version = "0-unstable-" + builtins.substring 0 8 (self.lastModifiedDate or "19700101");
      fleetFor = pkgs: pkgs.callPackage ./nix/package.nix { inherit version; };
    in
    {
      # bin/fleet and, in the second output, bin/fleet-client.
      overlays.default = final: prev: {
        fleet = fleetFor final;
        fleet-client = final.fleet.client;
      };

      packages = builtins.listToAttrs (map
        (system:
          let fleet = fleetFor nixpkgs.legacyPackages.${system}; in
          { name = system; value = { inherit fleet; fleet-client = fleet.client; default = fleet; }; })
        systems);

      nixosModules = {
        client = { imports = [ ./nixos/client.nix ]; };
        server = { imports = [ ./nixos/server.nix ]; };
        # Both; each does nothing until enabled.
        default = { imports = [ ./nixos/client.nix ./nixos/server.nix ]; };
      };
    };
}
