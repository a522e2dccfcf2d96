# A stand-in for nixpkgs.lib.nixosSystem, because nothing here can fetch nixpkgs.
#
# It has the shape fleet relies on: `config.system.build.toplevel` is a derivation whose
# `bin/switch-to-configuration <switch|boot|test>` activates it. This one only records the activation in
# $FLEET_ACTIVATION_LOG (default /var/lib/fleet-client/activations.log), then runs $FLEET_ACTIVATION_HOOK
# (operation, host, system) when set, so tests can make an activation fail or cut the network; a real system
# does the rest. `switch-to-configuration dry-activate` changes nothing and says, in NixOS's words ("would restart
# the following units: a.service, b.service"), which units switching would restart: those in `restartUnits` of
# this system or of the running one (the last `switch` or `test` in the log) but not both, as a unit whose
# configuration a module changes is restarted when the module comes and again when it goes.
# Modules are attribute sets with `motd` (lines), `files` ({ name = text; }), `restartUnits` (unit names whose
# configuration the module changes) and `imports` (paths), merged in order;
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
    restartUnits = acc.restartUnits ++ (module.restartUnits or [ ]);
  }) { motd = [ ]; files = { }; restartUnits = [ ]; } (builtins.concatMap expand modules);
  restartUnits = builtins.concatStringsSep "\n" merged.restartUnits;
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
      printf '%b' ${builtins.toJSON restartUnits} > $out/etc/restart-units
      /bin/mkdir -p $out/libexec
      /bin/cat > $out/libexec/toy-dry-activate <<'EOF'
      #!/bin/sh
      log="$FLEET_ACTIVATION_LOG"
      [ -n "$log" ] || log=/var/lib/fleet-client/activations.log
      running=$(grep -E '^(switch|test) ' "$log" 2>/dev/null | tail -n 1 | cut -d ' ' -f 3)
      units=$( { cat "$1/etc/restart-units"; echo; [ -z "$running" ] || cat "$running/etc/restart-units" 2>/dev/null; echo; } \
        | grep -v '^$' | sort | uniq -u | paste -s -d , - | sed 's/,/, /g')
      [ -z "$units" ] || echo "would restart the following units: $units" >&2
      echo "would activate the configuration..." >&2
      EOF
      /bin/cat > $out/bin/switch-to-configuration <<EOF
      #!/bin/sh
      if [ "\$1" = dry-activate ]; then exec /bin/sh $out/libexec/toy-dry-activate $out; fi
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
