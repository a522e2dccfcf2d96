{
  description = "gamma: a build box";
  outputs = { self }: {
    nixosConfigurations.gamma = import ./common/toy-nixos.nix {
      hostName = "gamma";
      modules = [ ./common/base.nix ./configuration.nix ];
    };
  };
}
