# A stand-in for nixpkgs.lib.nixosSystem, because nothing here can fetch nixpkgs.
#
# It has the shape fleet relies on: `config.system.build.toplevel` is a derivation whose
# `bin/switch-to-configuration <switch|boot|test>` activates it. This one only records the activation in
# $FLEET_ACTIVATION_LOG (default /var/lib/fleet-client/activations.log), then runs $FLEET_ACTIVATION_HOOK
# (operation, host, system) when set, so tests can make an activation fail or cut the network; a real system
# does the rest.
# Modules are attribute sets with `motd` (lines), `files` ({ name = text; }) and `imports` (paths), merged in order;
# `modules` may hold the sets themselves or paths to them. `extendModules { modules }` is the same system with more
# modules after these, as nixpkgs' (fleet-client composes host-local overlays with it).
{ hostName, modules ? [ ] }:
let
  # A module's `imports` (paths, as fleet-roles.nix has) come before it, as in NixOS.
  expand = m: let module = if builtins.isAttrs m then m else import m;
    in builtins.concatMap expand (module.imports or [ ]) ++ [ module ];
  merged = builtins.foldl' (acc: module: {
    motd = acc.motd ++ (module.motd or [ ]);
    files = acc.files // (module.files or { });
  }) { motd = [ ]; files = { }; } (builtins.concatMap expand modules);
  motd = builtins.concatStringsSep "\n" merged.motd;
  fileCommands = builtins.concatStringsSep "\n" (builtins.attrValues (builtins.mapAttrs
    (name: text: "printf '%b' ${builtins.toJSON text} > $out/etc/${name}") merged.files));
  toplevel = derivation {
    name = "nixos-system-${hostName}-toy";
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" ''
      set -e
      /bin/mkdir -p $out/bin $out/etc
      printf '%b\n' ${builtins.toJSON motd} > $out/etc/motd
      ${fileCommands}
      printf '%s\n' ${builtins.toJSON hostName} > $out/etc/hostname
      /bin/cat > $out/bin/switch-to-configuration <<EOF
      #!/bin/sh
      log="\''${FLEET_ACTIVATION_LOG:-/var/lib/fleet-client/activations.log}"
      printf '%s %s %s\n' "\$1" ${hostName} $out >> "\$log"
      if [ -n "\''${FLEET_ACTIVATION_HOOK:-}" ]; then exec "\$FLEET_ACTIVATION_HOOK" "\$1" ${hostName} $out; fi
      EOF
      /bin/chmod +x $out/bin/switch-to-configuration
    '' ];
  };
in
{
  config.system.build.toplevel = toplevel;
  config.networking.hostName = hostName;
  extendModules = extension:
    import ./toy-nixos.nix { inherit hostName; modules = modules ++ (extension.modules or [ ]); };
}
