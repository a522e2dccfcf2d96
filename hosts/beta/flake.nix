{
  description = "beta: a web server with an API token";
  outputs = { self }: {
    nixosConfigurations.beta = import ./common/toy-nixos.nix {
      hostName = "beta";
      modules = [ ./common/base.nix ./fleet-roles.nix ./configuration.nix ];
    };
  };
}
