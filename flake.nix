# fleet's NixOS modules, for the flakes that configure a fleet's server and hosts:
#
#   inputs.fleet.url = "git+https://…/fleet";
#   modules = [ fleet.nixosModules.client { services.fleet-client = { enable = true; … }; } ];
#
# No inputs on purpose: the modules use the nixpkgs of the configuration that imports them, so this flake
# evaluates offline and adds nothing to a host's lock file but itself. It is only a file at the root of this
# repository: the example fleet's hosts (hosts/*/flake.nix) are flakes of their own, and `fleet publish`
# publishes hosts/<host>/, never this file. See docs/deployment.md.
{
  description = "fleet: NixOS modules for a pull-based fleet (services.fleet-client, services.fleet-server)";

  outputs = { self }: {
    nixosModules = {
      client = { imports = [ ./nixos/client.nix ]; };
      server = { imports = [ ./nixos/server.nix ]; };
      # Both; each does nothing until enabled.
      default = { imports = [ ./nixos/client.nix ./nixos/server.nix ]; };
    };
  };
}
