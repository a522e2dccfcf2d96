{
  description = "alpha: a web server";
  outputs = { self }: {
    nixosConfigurations.alpha = import ./common/toy-nixos.nix {
      hostName = "alpha";
      modules = [ ./common/base.nix ./fleet-roles.nix ./configuration.nix ];
    };
  };
}
