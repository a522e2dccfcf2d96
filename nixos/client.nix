# services.fleet-client: this host pulls its own NixOS configuration from the fleet server and applies it.
#
# Everything here is declared by Nix; nothing is generated on the host at runtime:
#   /etc/fleet/client.toml            from `settings` (or `configFile`, e.g. the output of
#                                     `fleet client-config HOST` on the server)
#   fleet-client.service              one `fleet-client run` (oneshot), started by
#   fleet-client.timer                every poll_interval_seconds of client.toml (settings or configFile)
#                                     plus a random delay, and 2 minutes after boot
#   fleet-client-page.socket          the UPDATE MY MACHINE page, 127.0.0.1:9999 only, which starts
#   fleet-client-page.service         `fleet-client serve` with the listening socket (Accept=no), as a
#                                     sandboxed dynamic user whose button runs `systemctl start
#                                     fleet-client.service` (polkit lets it start that unit only)
#
# Hosts without NixOS get the same four units from `fleet-client install-units`
# (Sources/HostAgent/SystemdUnits.swift): keep the two in step. Facts shared with the Swift code (client.toml
# keys, exit statuses, the page's address) live in ./shared.nix, which the tests compare with it.
#
# Exit statuses of a run and the unit's state (systemctl status fleet-client, OnFailure=):
#   0 unchanged, 10 applied              success
#   13 unreachable                       success: nothing changed here, the next poll tries again
#   14 locked                            success: another run (the page's button) holds the lock and reports
#   11 failed, 12 refused, 15 rolled back  the unit is failed: the build or activation failed, verification
#                                        refused what the server sent (or its host key), or a switch was
#                                        undone. The next poll normally exits 0 again (a failed generation
#                                        is not retried until a newer one is published), so "failed" lasts
#                                        until then; `fleet-client status` here and `fleet status` on the
#                                        server keep the record.
#   16 local failure                     failed: this host cannot store or extract what it downloads (no
#                                        space left, a state directory it cannot write); tried again each poll
#   17 stale                             failed: the manifest expired (a stale mirror or a replay; freeze
#                                        protection); nothing applied, asked again each poll
#   1 any other error (e.g. client.toml unreadable)  failed
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types literalExpression;

  cfg = config.services.fleet-client;
  shared = import ./shared.nix;
  toml = pkgs.formats.toml { };
  configPath = "/etc/fleet/client.toml";

  absolutePath = types.strMatching "/[^[:cntrl:]]*";
  timeSpan = types.strMatching shared.timeSpanPattern;

  # The package: fleet's own overlay's `fleet-client` when the configuration applies it
  # (fleet.overlays.default), else the same expression (../nix/package.nix) built with this configuration's
  # nixpkgs. So the module needs no nixpkgs of its own: see docs/deployment.md, "The package".
  defaultPackage = pkgs.fleet-client or (pkgs.callPackage ../nix/package.nix { }).client;
  binary = "${cfg.package}/bin/fleet-client";

  # TOML has no null: optional keys left unset (operation) are left out of the file.
  renderedSettings = lib.filterAttrsRecursive (_: value: value != null) cfg.settings;

  # Keys fleet-client would refuse ("unknown key"), found at evaluation instead of on the host.
  knownTop = shared.clientKeys.top ++ builtins.attrNames shared.clientKeys.tables
    ++ builtins.attrNames shared.clientKeys.tableArrays;
  unknownIn = known: attrs: builtins.filter (key: !builtins.elem key known) (builtins.attrNames attrs);
  unknownKeys =
    map (key: "settings.${key}") (unknownIn knownTop renderedSettings)
    ++ lib.concatLists (lib.mapAttrsToList
      (table: keys:
        let value = renderedSettings.${table} or { }; in
        if builtins.isAttrs value then map (key: "settings.${table}.${key}") (unknownIn keys value)
        else [ "settings.${table} (must be a table)" ])
      shared.clientKeys.tables)
    ++ lib.concatLists (lib.mapAttrsToList
      (array: keys:
        let value = renderedSettings.${array} or [ ]; in
        if builtins.isList value then
          lib.concatLists (lib.imap1 (index: element:
            if builtins.isAttrs element then map (key: "settings.${array}.${toString index}.${key}") (unknownIn keys element)
            else [ "settings.${array}.${toString index} (must be a table)" ]) value)
        else [ "settings.${array} (must be a list of tables)" ])
      shared.clientKeys.tableArrays);

  configFile = if cfg.configFile != null then cfg.configFile else toml.generate "client.toml" renderedSettings;

  # The timer's interval is client.toml's poll_interval_seconds, whichever way the file is given: the host
  # reports that value to the server, which judges silence by it, so the timer must not say otherwise.
  pollIntervalSeconds =
    if cfg.configFile != null then shared.pollIntervalSeconds (builtins.fromTOML (builtins.readFile cfg.configFile))
    else cfg.settings.poll_interval_seconds;
  interval = shared.timeSpan pollIntervalSeconds;
  # TimeoutStartSec= of the run: longer than client.toml's [timeouts] and confirmation window together
  # (ClientConfiguration.longestRunSeconds), so systemd never kills a run that would end by itself.
  runTimeoutSeconds =
    let
      settings = if cfg.configFile != null then builtins.fromTOML (builtins.readFile cfg.configFile) else cfg.settings;
      timeouts = settings.timeouts or { };
      rollback = settings.rollback or { };
    in
    (timeouts.build_seconds or 3600) + (timeouts.activation_seconds or 900)
    + (rollback.confirm_timeout_seconds or 90) + 600;

  # What a run needs besides the client, as NixOS gives its own upgrade unit (system.autoUpgrade's
  # nixos-upgrade.service, nixos/modules/tasks/auto-upgrade.nix): Nix, and what Nix calls while it fetches and
  # unpacks (git, ssh for git+ssh inputs, tar/xz/gzip for tarballs), Nix's own environment (nix.envVars) and the
  # proxy of networking.proxy. The configuration's own switch-to-configuration brings the rest.
  runEnvironment = {
    path = [
      pkgs.coreutils
      pkgs.gnutar
      pkgs.xz.bin
      pkgs.gzip
      pkgs.gitMinimal
      config.nix.package.out
      config.programs.ssh.package
    ];
    environment = config.nix.envVars // config.networking.proxy.envVars // {
      # The client builds flakes with `nix build`; this works whether or not nix.conf enables them.
      NIX_CONFIG = "extra-experimental-features = nix-command flakes";
    } // lib.optionalAttrs (config.nix.nixPath != [ ]) {
      # A host whose directory has configuration.nix (no flake) is built from <nixpkgs/nixos>.
      NIX_PATH = lib.concatStringsSep ":" config.nix.nixPath;
    };
  };

  # The page's button: `fleet-client serve` runs these words (split on whitespace, no shell) to start a run in
  # fleet-client.service, so the run never belongs to the page's sandbox. --no-block: the page answers at once
  # and shows the run's progress from progress.json.
  startCommand = "${config.systemd.package}/bin/systemctl start --no-block fleet-client.service";
  # One argument of ExecStart=, double-quoted. Store paths and these words need no escaping; anything that
  # would (%, $, quotes, backslashes) is refused rather than escaped wrongly.
  systemdArgument = word:
    if builtins.match "[A-Za-z0-9/._+=@ -]*" word != null then ''"${word}"''
    else throw "services.fleet-client: cannot quote ${word} for ExecStart=";
  pageUser = "fleet-client-page";
in
{
  imports = [
    (lib.mkRemovedOptionModule [ "services" "fleet-client" "interval" ] ''
      The timer's interval is client.toml's poll_interval_seconds (services.fleet-client.settings.poll_interval_seconds,
      or the configFile's key; `fleet client-config` writes it from fleet.toml), which the host also reports to
      the server.'')
  ];

  options.services.fleet-client = {
    enable = lib.mkEnableOption "fleet-client, which pulls this host's configuration from the fleet server";

    package = mkOption {
      type = types.package;
      default = defaultPackage;
      defaultText = literalExpression
        "pkgs.fleet-client (fleet.overlays.default), else fleet's nix/package.nix built with pkgs";
      description = ''
        The package providing `bin/fleet-client`. By default fleet's own package, built from source with this
        configuration's nixpkgs (it needs Swift 6.2: nixpkgs from NixOS/nixpkgs#557896 on).
      '';
    };

    configFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "./client.toml";
      description = ''
        A complete client.toml (e.g. the output of `fleet client-config HOST` on the server), installed as
        ${configPath} instead of one rendered from `settings`. It holds public keys and paths only, so
        having it in the Nix store is fine. When set, `settings` is ignored. Its `poll_interval_seconds`
        (default 900) sets the timer, so it is read at evaluation: give a file of the configuration's own
        tree (e.g. `./client.toml`), not one built by a derivation.
      '';
    };

    settings = mkOption {
      description = ''
        The contents of ${configPath}, key for key (the names are client.toml's). Keys fleet-client does not
        know are refused at evaluation, as fleet-client would refuse them.
      '';
      default = { };
      example = literalExpression ''
        {
          fleet_public_key = "fleet-1:Qx8p…=";
          server = {
            address = "fleet.example.org";
            host_key = "ssh-ed25519 AAAAC3Nza… root@fleet";
          };
          operation = "boot";
        }
      '';
      type = types.submodule {
        freeformType = toml.type;
        options = {
          host = mkOption {
            type = types.strMatching shared.hostNamePattern;
            default = config.networking.hostName;
            defaultText = literalExpression "config.networking.hostName";
            description = "This host's name in the fleet's fleet.toml.";
          };
          fleet_public_key = mkOption {
            type = types.strMatching "[^:[:space:]]+:[A-Za-z0-9+/]+=*";
            example = "fleet-1:Qx8pB0Yh0dXzD3kpX3tN9tQm4w6F8M1Jk0s2o8Vb2bU=";
            description = ''
              The key manifests must be signed with, `name:base64`: the server's
              `/var/lib/fleet/signing.pub` (`fleet init` prints it).
            '';
          };
          identity_file = mkOption {
            type = absolutePath;
            default = "/etc/ssh/ssh_host_ed25519_key";
            description = ''
              The private key this host logs in with (a path on the host, never a Nix path: it must not enter
              the store). Its public half is the host's key in fleet.toml.
            '';
          };
          state_dir = mkOption {
            type = absolutePath;
            default = "/var/lib/fleet-client";
            description = "Where fleet-client keeps its state, extracted generations and installed secrets.";
          };
          profile = mkOption {
            type = absolutePath;
            default = "/nix/var/nix/profiles/system";
            description = "The Nix profile whose generations are this host's systems.";
          };
          operation = mkOption {
            type = types.nullOr (types.enum [ "switch" "boot" "test" ]);
            default = null;
            example = "boot";
            description = ''
              Overrides the operation the server publishes, e.g. `boot` on a machine that must not change
              while in use. Null: the published operation.
            '';
          };
          log_limit_bytes = mkOption {
            type = types.ints.between 65536 1073741824;
            default = 4194304;
            description = "Run logs larger than this are cut in the middle, saying so.";
          };
          keep_generations = mkOption {
            type = types.ints.between 0 100;
            default = 2;
            description = "Extracted generations kept besides the current one.";
          };
          poll_interval_seconds = mkOption {
            type = types.ints.between shared.pollIntervalRange.min shared.pollIntervalRange.max;
            default = shared.defaultPollIntervalSeconds;
            example = 3600;
            description = ''
              How often the timer polls the server, in seconds (OnUnitActiveSec=, counted from the last run's
              start). The host reports it to the server, whose `fleet status` calls the host silent after
              `silent_after_intervals` of them; `fleet client-config` writes fleet.toml's value for the host.
            '';
          };
          server = mkOption {
            description = "The `[server]` table: the fleet server and how to reach it.";
            default = { };
            type = types.submodule {
              freeformType = toml.type;
              options = {
                address = mkOption {
                  type = types.str;
                  example = "fleet.example.org";
                  description = "The fleet server's address.";
                };
                port = mkOption {
                  type = types.port;
                  default = 22;
                  description = "The fleet server's SSH port.";
                };
                user = mkOption {
                  type = types.strMatching "[a-z0-9_][a-z0-9_-]{0,31}";
                  default = shared.unixUser "fleet-" cfg.settings.host;
                  defaultText = literalExpression ''"fleet-" + settings.host'';
                  description = ''
                    This host's Unix user on the server: fleet.toml's `user_prefix` (default `fleet-`) and the
                    host name.
                  '';
                };
                host_key = mkOption {
                  type = types.strMatching "[a-z0-9@.-]+ [A-Za-z0-9+/]+=*( [^[:cntrl:]]*)?";
                  example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI… root@fleet";
                  description = ''
                    The server's SSH host key, one OpenSSH public key line. It is pinned: the client refuses a
                    server that shows any other key (no trust on first use).
                  '';
                };
                connect_timeout_seconds = mkOption {
                  type = types.ints.between 1 600;
                  default = 10;
                  description = "How long connecting to the server may take.";
                };
                io_timeout_seconds = mkOption {
                  type = types.ints.between 1 3600;
                  default = 60;
                  description = "A transfer that makes no progress for this long is abandoned.";
                };
                connect_retry_seconds = mkOption {
                  type = types.ints.between 0 3600;
                  default = 180;
                  description = ''
                    How long a run keeps retrying a server it cannot connect to (refused, reset or timed out before
                    authentication: a burst of polls, a restart), with jittered exponential back-off; 0: one attempt.
                  '';
                };
              };
            };
          };
          rollback = mkOption {
            description = ''
              The `[rollback]` table (magic rollback): after a switch, the server must be reached over a new SSH
              connection and the health checks must pass within this window, or the previous generation is
              restored.
            '';
            default = { };
            type = types.submodule {
              freeformType = toml.type;
              options = {
                confirm_timeout_seconds = mkOption {
                  type = types.ints.between 5 3600;
                  default = 90;
                  description = "The confirmation window after an activation, in seconds.";
                };
                confirm_attempts = mkOption {
                  type = types.ints.between 1 100;
                  default = 3;
                  description = "Attempts spread over the window; a short outage inside it causes no rollback.";
                };
              };
            };
          };
          timeouts = mkOption {
            description = ''
              The `[timeouts]` table: a build or an activation that runs longer is killed (its whole process
              group) and the generation fails like any other, so a hung build cannot hold the host forever.
            '';
            default = { };
            type = types.submodule {
              freeformType = toml.type;
              options = {
                build_seconds = mkOption {
                  type = types.ints.between 1 604800;
                  default = 3600;
                  description = "How long a build (or a substitution from the fleet's cache) may take, in seconds.";
                };
                activation_seconds = mkOption {
                  type = types.ints.between 1 86400;
                  default = 900;
                  description = "How long `switch-to-configuration` may take, in seconds.";
                };
              };
            };
          };
          overlays = mkOption {
            description = ''
              The `[overlays]` table: units that an overlay apply or removal (`fleet-client overlay`) must not stop
              or restart, found with `switch-to-configuration dry-activate` before the switch, and what to do when
              one would be: `refuse` (the run fails, the previous system stays) or `boot` (the system becomes the
              boot default without being activated, and runs after the next reboot).
            '';
            default = { };
            type = types.submodule {
              freeformType = toml.type;
              options = {
                protect_units = mkOption {
                  # What fleet-client accepts (ClientConfiguration.isUnitName): name.type, no control characters.
                  type = types.listOf (types.strMatching
                    "[A-Za-z0-9:_@\\\\][A-Za-z0-9:_.@\\\\-]*\\.(service|socket|target|mount|automount|swap|path|timer|slice|scope|device)");
                  default = [ ];
                  example = [ "sshd.service" "gitlab-runner.service" ];
                  description = "Units an overlay apply or removal must not stop or restart (at most 256).";
                };
                protect_policy = mkOption {
                  type = types.enum [ "refuse" "boot" ];
                  default = "refuse";
                  description = "`refuse`: do not switch; `boot`: make it the boot default, activate nothing now.";
                };
              };
            };
          };
          health_checks = mkOption {
            description = ''
              `[[health_checks]]`: commands (argument lists run without a shell, the first an absolute path)
              that must exit 0 within their timeout for a new generation to be kept.
            '';
            default = [ ];
            example = literalExpression ''
              [ { name = "web"; command = [ "''${pkgs.curl}/bin/curl" "-fsS" "http://127.0.0.1/" ]; timeout_seconds = 10; } ]
            '';
            type = types.listOf (types.submodule {
              freeformType = toml.type;
              options = {
                name = mkOption { type = types.str; description = "Shown in logs and reports."; };
                command = mkOption {
                  type = types.nonEmptyListOf types.str;
                  description = "The program (absolute path) and its arguments.";
                };
                timeout_seconds = mkOption {
                  type = types.ints.between 1 3600;
                  default = 30;
                  description = "The check fails (and is killed) past this.";
                };
              };
            });
          };
          servers = mkOption {
            description = ''
              `[[servers]]`: mirrors of the fleet server, tried in this order when `[server]` cannot be reached
              or serves no usable manifest (stale, older than one seen, not verifying). The user, identity file
              and timeouts are `[server]`'s; each mirror's host key is pinned like the server's.
            '';
            default = [ ];
            example = literalExpression ''
              [ { name = "mirror-a"; address = "mirror-a.example.org"; host_key = "ssh-ed25519 AAAAC3Nza… root@mirror-a"; } ]
            '';
            type = types.listOf (types.submodule {
              freeformType = toml.type;
              options = {
                name = mkOption {
                  type = types.addCheck (types.strMatching shared.hostNamePattern) (name: name != "primary");
                  description = "Named in logs and reports; host-name rules, unique, not `primary`.";
                };
                address = mkOption { type = types.str; description = "The mirror's address."; };
                port = mkOption { type = types.port; default = 22; description = "The mirror's SSH port."; };
                host_key = mkOption {
                  type = types.strMatching "[a-z0-9@.-]+ [A-Za-z0-9+/]+=*( [^[:cntrl:]]*)?";
                  description = "The mirror's SSH host key, one OpenSSH public key line, pinned.";
                };
              };
            });
          };
          reboot = mkOption {
            description = ''
              The `[reboot]` table: whether fleet-client reboots the machine when a new generation needs it
              (another kernel, initrd or kernel modules, or a generation staged with `boot`).
            '';
            default = { };
            type = types.submodule {
              freeformType = toml.type;
              options = {
                policy = mkOption {
                  type = types.enum [ "never" "window" ];
                  default = "never";
                  description = "`never`: report that a reboot is needed; `window`: reboot inside `window`.";
                };
                window = mkOption {
                  type = types.nullOr (types.strMatching "[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]");
                  default = null;
                  example = "02:00-04:00";
                  description = "Local time window `HH:MM-HH:MM`; it may cross midnight.";
                };
                command = mkOption {
                  type = types.nonEmptyListOf types.str;
                  default = [ "/run/current-system/sw/bin/systemctl" "reboot" ];
                  description = "Run (without a shell) to reboot, once the report is uploaded.";
                };
              };
            };
          };
        };
      };
    };

    randomizedDelay = mkOption {
      type = timeSpan;
      default = shared.defaultRandomizedDelay;
      example = "0";
      description = ''
        A random delay, up to this, added to every poll (RandomizedDelaySec=) so that a fleet does not reach
        its server at once.
      '';
    };

    page.enable = mkOption {
      type = types.bool;
      default = !(config.services.fleet-server.enable or false);
      defaultText = literalExpression "!config.services.fleet-server.enable";
      description = ''
        Whether to offer the page on http://127.0.0.1:9999 whose button starts a run (loopback only;
        `fleet-client serve`, socket-activated, unprivileged and sandboxed). Off by default on the fleet
        server itself, which has no one in front of it to press the button.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.configFile != null || unknownKeys == [ ];
        message = ''
          services.fleet-client: fleet-client would refuse these client.toml keys:
          ${lib.concatStringsSep ", " unknownKeys}. The keys it knows are listed in fleet's nixos/shared.nix.'';
      }
    ];

    warnings = lib.optional
      (cfg.configFile == null && cfg.settings.identity_file == "/etc/ssh/ssh_host_ed25519_key"
        && !config.services.openssh.enable)
      ''
        services.fleet-client logs in with /etc/ssh/ssh_host_ed25519_key, which NixOS generates only when
        services.openssh is enabled: enable it, create that key, or set settings.identity_file.'';

    environment.etc."fleet/client.toml".source = configFile;
    environment.systemPackages = [ cfg.package ];

    systemd.services.fleet-client = runEnvironment // {
      description = "fleet: pull and apply this host's configuration";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # A run activates new systems, and activation restarts the units that changed and stops the units that
      # are gone. This one must be neither restarted (killed) by the activation it is performing, nor stopped
      # when that activation removes it (services.fleet-client.enable = false): its new definition, or its
      # absence, applies from the next run. NixOS's nixos-upgrade.service sets the same two.
      # No ordering against nixos-upgrade.service or a hand-run nixos-rebuild: the run itself waits for
      # switch-to-configuration's lock (/run/nixos/switch-to-configuration.lock; Sources/HostAgent/NixSystem.swift).
      restartIfChanged = false;
      unitConfig.X-StopOnRemoval = false;
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${binary} run --config ${configPath}";
        # Applied, unreachable and locked are not failures of this unit; see the top of this file.
        SuccessExitStatus = lib.concatMapStringsSep " " toString shared.successExitStatuses;
        TimeoutStartSec = runTimeoutSeconds;
      };
    };

    # Monotonic: 2 minutes after boot, then poll_interval_seconds after each run started. Persistent= only applies to
    # OnCalendar= timers; the boot poll is what catches up after the machine was off.
    systemd.timers.fleet-client = {
      description = "fleet: poll the fleet server every ${interval}";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = shared.bootDelay;
        OnUnitActiveSec = interval;
        RandomizedDelaySec = cfg.randomizedDelay;
      };
    };

    systemd.sockets.fleet-client-page = lib.mkIf cfg.page.enable {
      description = "fleet: the UPDATE MY MACHINE page (loopback only)";
      wantedBy = [ "sockets.target" ];
      listenStreams = [ shared.pageListenStream ];
      # One `fleet-client serve` receives the listening socket and accepts the connections itself, so that
      # it can show a run's progress to every page that asks and never start two runs.
      socketConfig.Accept = false;
    };

    # The page only reads <state_dir>/state.json and progress.json (0644 in a 0755 directory) and asks systemd
    # to start fleet-client.service; it runs no activation itself. So it runs as a dynamic user with nothing
    # but that: no capabilities, no writable path, no network but the socket systemd passes it.
    # Neither KillMode=process nor restartIfChanged = false (which an earlier page, running the activations
    # itself, needed): the run lives in fleet-client.service, so restarting or stopping the page leaves it alone.
    systemd.services.fleet-client-page = lib.mkIf cfg.page.enable {
      description = "fleet: the UPDATE MY MACHINE page on http://${shared.pageListenStream}";
      requires = [ "fleet-client-page.socket" ];
      after = [ "fleet-client-page.socket" ];
      serviceConfig = shared.pageHardening // {
        ExecStart = "${binary} serve --config ${configPath} --start-command ${systemdArgument startCommand}";
        User = pageUser;
      };
    };

    # What the page's user may do as root: start fleet-client.service, and nothing else (not stop, restart or
    # any other unit). systemctl asks systemd over D-Bus; systemd asks polkit.
    security.polkit.enable = lib.mkIf cfg.page.enable true;
    security.polkit.extraConfig = lib.mkIf cfg.page.enable ''
      // fleet-client: the UPDATE MY MACHINE page may start a run.
      polkit.addRule(function (action, subject) {
        if (action.id == "org.freedesktop.systemd1.manage-units" &&
            action.lookup("unit") == "fleet-client.service" &&
            action.lookup("verb") == "start" &&
            subject.user == "${pageUser}") {
          return polkit.Result.YES;
        }
      });
    '';
  };
}
