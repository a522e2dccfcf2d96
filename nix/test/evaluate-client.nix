# Evaluates nixos/client.nix offline, with stand-ins for nixpkgs' lib (./stand-in-lib.nix), for the packages it
# names (fake store paths) and for the NixOS options it reads, and renders the systemd units it declares as
# NixOS's systemd-lib would (the keys and values that matter to systemd; not byte for byte).
#
#   nix-instantiate --eval --strict --json nix/test/evaluate-client.nix --arg client '{ … }'
#
# `client`: services.fleet-client's values (the module's defaults fill the rest); `server`: whether
# services.fleet-server is imported and enabled (null: not imported); `proxy`: networking.proxy.envVars.
{ client, server ? null, proxy ? { }, overlay ? true }:
let
  lib = import ./stand-in-lib.nix;
  # A package: a store path that does not exist, which is all the units name.
  fake = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    bin = fake "${name}-bin";
    out = fake name;
  };
  pkgs = {
    coreutils = fake "coreutils";
    gnutar = fake "gnutar";
    xz = fake "xz";
    gzip = fake "gzip";
    gitMinimal = fake "git-minimal";
    formats.toml = { }: {
      type = lib.types.str;
      generate = name: value: builtins.toFile name (builtins.toJSON value);
    };
    callPackage = path: overrides: throw "the stand-in pkgs builds no package: ${toString path}";
  } // lib.optionalAttrs overlay { fleet-client = fake "fleet-client"; };

  config = {
    networking.hostName = "nixmodule-test";
    networking.proxy.envVars = proxy;
    nix.package = fake "nix";
    nix.nixPath = [ ];
    nix.envVars = { };
    programs.ssh.package = fake "openssh";
    systemd.package = fake "systemd";
    services = {
      openssh.enable = true;
      fleet-client = lib.recursiveUpdate (defaultsOf module.options.services.fleet-client) client;
    } // lib.optionalAttrs (server != null) { fleet-server.enable = server; };
  };

  module = import ../../nixos/client.nix { inherit config lib pkgs; };

  # The options' defaults, as the module system would fill them in.
  defaultsOf = options: builtins.listToAttrs (builtins.concatMap
    (name:
      let option = options.${name}; in
      if (option._type or null) == "option" then
        if option.type.name == "submodule" then
          [{ inherit name; value = lib.recursiveUpdate (defaultsOf option.type.module.options) (option.default or { }); }]
        else lib.optional (option ? default) { inherit name; value = option.default; }
      else if builtins.isAttrs option then [{ inherit name; value = defaultsOf option; }]
      else [ ])
    (builtins.attrNames options));

  # mkIf, resolved: a false condition leaves the definition out.
  resolve = value:
    if builtins.isAttrs value && (value._type or null) == "if" then
      (if value.condition then resolve value.content else null)
    else if builtins.isAttrs value && (value.type or null) != "derivation" then
      lib.filterAttrsRecursive (_: v: v != null) (builtins.mapAttrs (_: resolve) value)
    else value;
  resolved = resolve module.config;

  render = value:
    if builtins.isBool value then (if value then "true" else "false")
    else if builtins.isList value then builtins.concatStringsSep " " (map render value)
    else toString value;
  # Lists become one line each, as systemd-lib writes them (SystemCallFilter= lines add up).
  lines = attrs: builtins.concatStringsSep "" (lib.concatLists (lib.mapAttrsToList
    (key: value:
      if builtins.isList value && key != "SystemCallFilter" then map (v: "${key}=${render v}\n") value
      else if key == "SystemCallFilter" then map (v: "${key}=${v}\n") value
      else [ "${key}=${render value}\n" ])
    attrs));
  unitSection = unit:
    "[Unit]\n" + lines ({ Description = unit.description or ""; }
      // lib.optionalAttrs (unit ? requires) { Requires = unit.requires; }
      // lib.optionalAttrs (unit ? wants) { Wants = unit.wants; }
      // lib.optionalAttrs (unit ? after) { After = unit.after; }
      // lib.optionalAttrs ((unit.restartIfChanged or true) == false) { X-RestartIfChanged = false; }
      // (unit.unitConfig or { }));
  service = unit:
    let
      environment = (unit.environment or { })
        // lib.optionalAttrs (unit ? path) { PATH = lib.makeBinPath unit.path; };
    in
    unitSection unit + "\n[Service]\n"
    + builtins.concatStringsSep "" (lib.mapAttrsToList (key: value: "Environment=\"${key}=${value}\"\n") environment)
    + lines (unit.serviceConfig or { });
  socket = unit: unitSection unit + "\n[Socket]\n"
    + lines ({ ListenStream = unit.listenStreams; } // (unit.socketConfig or { }));
  timer = unit: unitSection unit + "\n[Timer]\n" + lines (unit.timerConfig or { });
  units = kind: renderer: lib.mapAttrsToList (name: unit: { name = "${name}.${kind}"; value = renderer unit; })
    (resolved.systemd.${kind + "s"} or { });
in
{
  units = builtins.listToAttrs (units "service" service ++ units "socket" socket ++ units "timer" timer);
  polkit = resolved.security.polkit or { };
  pageEnabled = config.services.fleet-client.page.enable;
  package = toString config.services.fleet-client.package;
}
