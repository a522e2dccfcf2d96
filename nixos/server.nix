# services.fleet-server: the fleet server. OpenSSH serves each host its own SFTP chroot; `fleet publish` fills
# the chroots from the fleet repository.
#
# What Nix declares (at evaluation, from the options):
#   - sshd: enabled, `Subsystem sftp internal-sftp`, and at the end of sshd_config
#     `Match all` + `Include /etc/fleet/sshd-match.conf`;
#   - one system user and group per host in `hosts` (default: the hosts of `inventory`, a fleet.toml read at
#     evaluation), as `fleet setup` would make them: comment "fleet host <name>", home /, nologin, password
#     "*" (key logins only). Declared users survive `users.mutableUsers = false`;
#   - fleet-setup.service (at boot and before every publish), fleet-publish.service, and what starts it:
#     fleet-publish.path (a commit in the repository) and a timer (`publish.startAt`);
#   - with `autoUpdate.enable`, fleet-update.service at `autoUpdate.startAt`: `fleet update --commit`, which
#     updates the hosts' flake inputs, builds them and publishes what built (docs/updates.md);
#   - FLEET_CHROOT_ROOT and FLEET_STATE_DIR for the services and for fleet run by hand.
#
# What `fleet` generates at runtime (fleet-setup.service), from the repository's fleet.toml:
#   - the signing key, once (`fleet init --key-only`): <stateDir>/signing.key and signing.pub;
#   - the hosts' authorized keys (<stateDir>/authorized_keys/<user>, root-owned, outside the chroots), the
#     chroot directories with their owners, and any host user Nix did not declare (`fleet setup`);
#   - /etc/fleet/sshd-match.conf: the per-host `Match User` blocks (`fleet sshd-config --match-only`),
#     replaced only when `sshd -t` accepts the result (with a throwaway host key: on a first boot sshd has
#     not made its keys yet; server-sshd-check.sh), then sshd is told to reload (SIGHUP);
#   - fleet-review.service, every `review.interval` (fleet-review.timer): `fleet review`, which ingests what
#     the hosts uploaded, fires the hooks' host events and writes `review.metricsFile`, so that hooks fire
#     without anyone running `fleet status` (`fleet install-units` writes the same units on Debian).
#   - fleet-refresh.service, every 15 minutes (fleet-refresh.timer): `fleet publish --refresh`, which re-signs
#     manifests about to expire (freeze protection, manifest_ttl_seconds), so hosts never see theirs expire;
#
# Until that file exists, the hosts cannot log in at all: their authorized keys are only named inside
# their Match blocks. A host added to fleet.toml but not to `hosts` is created by `fleet setup` (useradd);
# with `users.mutableUsers = false` NixOS removes such users at the next activation, so list every host
# (or point `inventory` at fleet.toml).
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types literalExpression;

  cfg = config.services.fleet-server;
  shared = import ./shared.nix;

  inventory = if cfg.inventory == null then { } else builtins.fromTOML (builtins.readFile cfg.inventory);
  inventoryServer = inventory.server or { };

  # Paths go into unit files and scripts unquoted-safe: no spaces, quotes, `%` or `$`.
  absolutePath = types.strMatching "/[A-Za-z0-9._/+@:-]*";
  matchFile = "/etc/fleet/sshd-match.conf";

  # The package: fleet's own overlay's `fleet` when the configuration applies it (fleet.overlays.default), else
  # the same expression (../nix/package.nix) built with this configuration's nixpkgs; see nixos/client.nix.
  defaultPackage = pkgs.fleet or (pkgs.callPackage ../nix/package.nix { });
  fleet = "${cfg.package}/bin/fleet";

  # NixOS refuses user names of 32 characters; fleet allows them (useradd does), so fleet setup makes those.
  hostUsers = map (host: { inherit host; user = shared.unixUser cfg.userPrefix host; }) cfg.hosts;
  declaredUsers = builtins.filter (entry: builtins.stringLength entry.user < 32) hostUsers;
  undeclaredUsers = builtins.filter (entry: builtins.stringLength entry.user >= 32) hostUsers;

  fleetEnvironment = {
    FLEET_CHROOT_ROOT = cfg.chrootRoot;
    FLEET_STATE_DIR = cfg.stateDir;
  };
  # For the units that read the repository with git and Nix (publish, update).
  repositoryEnvironment = fleetEnvironment // {
    # The repository usually belongs to an admin, not root; git would otherwise refuse to name its commit.
    GIT_CONFIG_COUNT = "1";
    GIT_CONFIG_KEY_0 = "safe.directory";
    GIT_CONFIG_VALUE_0 = cfg.repository;
    NIX_CONFIG = "extra-experimental-features = nix-command flakes";
  };
  repo = lib.escapeShellArg cfg.repository;
  sshd = config.services.openssh.package;
  sshdCheck = pkgs.writeShellScript "fleet-sshd-check" (builtins.readFile ./server-sshd-check.sh);

  setupScript = pkgs.writeShellScript "fleet-setup" ''
    set -euo pipefail
    export PATH=${lib.makeBinPath [ pkgs.coreutils pkgs.diffutils pkgs.shadow sshd config.systemd.package ]}
    # The signing key, once; an existing key is kept.
    ${fleet} init --key-only --key-name ${lib.escapeShellArg cfg.signingKeyName} --repo ${repo}
    # Users, authorized keys and chroots. Exit 1 means a host was refused (named in the table): the others
    # are set up, and their Match blocks are still written below.
    status=0
    ${fleet} setup --repo ${repo} || status=$?

    install -d -m 0755 /etc/fleet
    new=$(mktemp ${matchFile}.XXXXXX)
    trap 'rm -f "$new"' EXIT
    ${fleet} sshd-config --match-only --repo ${repo} > "$new"
    chmod 0644 "$new"
    if ! cmp -s "$new" ${matchFile}; then
      if [ -e ${matchFile} ]; then cp -p ${matchFile} ${matchFile}.previous; fi
      mv -f "$new" ${matchFile}
      if ! ${sshdCheck} /etc/ssh/sshd_config; then
        echo "fleet-setup: sshd -t refuses the configuration with the new Match blocks; keeping the previous ones" >&2
        if [ -e ${matchFile}.previous ]; then mv -f ${matchFile}.previous ${matchFile}; else rm -f ${matchFile}; fi
        exit 1
      fi
      echo "fleet-setup: wrote ${matchFile}"
      # sshd reads its configuration at start and on SIGHUP; open connections keep theirs. (A socket-activated
      # sshd reads it for every connection.)
      if systemctl is-active --quiet sshd.service; then
        systemctl kill --signal=HUP --kill-whom=main sshd.service
      fi
    fi
    exit "$status"
  '';
in
{
  options.services.fleet-server = {
    enable = lib.mkEnableOption "the fleet server: per-host SFTP chroots served by OpenSSH, filled by `fleet publish`";

    package = mkOption {
      type = types.package;
      default = defaultPackage;
      defaultText = literalExpression
        "pkgs.fleet (fleet.overlays.default), else fleet's nix/package.nix built with pkgs";
      description = ''
        The package providing `bin/fleet`. By default fleet's own, built from source with this configuration's
        nixpkgs (Swift 6.2).
      '';
    };

    repository = mkOption {
      type = absolutePath;
      default = "/var/lib/fleet/repo";
      description = ''
        The fleet repository on this machine (fleet.toml, hosts/, common/, secrets/): a git checkout, not a
        Nix path, because secrets/ lives there and must never enter the Nix store.
      '';
    };

    inventory = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression ''"''${inputs.fleet-repo}/fleet.toml"'';
      description = ''
        The fleet.toml, read at evaluation time: its hosts become `hosts`, and its `[server]` user_prefix,
        chroot_root and state_dir the defaults of the options of the same meaning. Usually the repository's
        fleet.toml reached through a flake input (never give a path that holds secrets/: it is copied into the
        store). Null: give `hosts` yourself.
      '';
    };

    hosts = mkOption {
      type = types.listOf (types.strMatching shared.hostNamePattern);
      default = builtins.attrNames (inventory.hosts or { });
      defaultText = literalExpression "the hosts of `inventory`";
      example = [ "web-01" "laptop-ada" ];
      description = "The fleet's hosts, whose Unix users Nix declares (`fleet setup` makes any others).";
    };

    userPrefix = mkOption {
      type = types.strMatching "[a-z][a-z-]{0,15}";
      default = inventoryServer.user_prefix or "fleet-";
      defaultText = literalExpression ''inventory's [server] user_prefix, or "fleet-"'';
      description = "fleet.toml's `user_prefix`: host web-01 logs in as `<prefix>web-01`.";
    };

    chrootRoot = mkOption {
      type = absolutePath;
      default = inventoryServer.chroot_root or "/srv/fleet";
      defaultText = literalExpression ''inventory's [server] chroot_root, or "/srv/fleet"'';
      description = ''
        The chroots' parent directory. Given to fleet as FLEET_CHROOT_ROOT, so it wins over fleet.toml's
        `chroot_root`. Every ancestor must be root-owned and not group- or other-writable (sshd's rule).
      '';
    };

    stateDir = mkOption {
      type = absolutePath;
      default = inventoryServer.state_dir or "/var/lib/fleet";
      defaultText = literalExpression ''inventory's [server] state_dir, or "/var/lib/fleet"'';
      description = ''
        The server's state (state.db, signing key, authorized keys). Given to fleet as FLEET_STATE_DIR, so it
        wins over fleet.toml's `state_dir`.
      '';
    };

    signingKeyName = mkOption {
      type = types.strMatching "[A-Za-z0-9._-]+";
      default = "fleet-1";
      example = "fleet.example.org-1";
      description = "The name of the signing key made at the first start (Nix key names go `host-N`).";
    };

    publish = {
      onCommit = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Publish whenever HEAD moves in the repository (a commit, pull, merge or checkout: git appends to
          `.git/logs/HEAD`). A push to another repository reaches this one through its post-receive hook
          (e.g. `git -C /var/lib/fleet/repo pull --ff-only`). Changes to secrets/, which git does not track,
          are published by the timer or by `systemctl start fleet-publish`.
        '';
      };

      startAt = mkOption {
        type = types.either types.str (types.listOf types.str);
        default = [ ];
        example = "*:0/10";
        description = ''
          When to publish as well (systemd calendar events, OnCalendar=). Publishing an unchanged repository
          writes nothing, so a short period is cheap.
        '';
      };
    };

    autoUpdate = {
      enable = lib.mkEnableOption ''
        fleet-update.service on a timer: `fleet update --commit`, which updates the hosts' flake inputs in a
        scratch copy of the repository, builds every host whose inputs moved, commits the lock files of those
        it publishes and publishes them (docs/updates.md)'';

      startAt = mkOption {
        type = types.either types.str (types.listOf types.str);
        default = "daily";
        example = "Mon *-*-* 04:00";
        description = "When to update (systemd calendar events, OnCalendar=).";
      };

      policy = mkOption {
        type = types.enum [ "all" "per-host" ];
        default = "all";
        description = ''
          `all`: publish only when every host whose inputs moved built, otherwise change nothing (and tell the
          hooks `update-failed`). `per-host`: publish each host that built; the others keep their generation and
          lock, and the next update tries the newest inputs for them again.
        '';
      };

      inputs = mkOption {
        type = types.listOf (types.strMatching "[A-Za-z][A-Za-z0-9_-]{0,63}");
        default = [ ];
        example = [ "nixpkgs" ];
        description = "The inputs to update (`--input`); empty: all of each host's inputs.";
      };
    };

    review = {
      interval = mkOption {
        type = types.strMatching "[1-9][0-9]*(s|min|h)";
        default = "1min";
        example = "30s";
        description = ''
          How often fleet-review.service runs `fleet review`: ingest the hosts' uploads, fire the hooks' host
          events (host-failed, host-silent, …) and write `metricsFile`. Without it those events only fire
          when someone runs `fleet status`.
        '';
      };

      metricsFile = mkOption {
        type = absolutePath;
        default = "${cfg.stateDir}/fleet.prom";
        defaultText = literalExpression ''"''${stateDir}/fleet.prom"'';
        example = "/var/lib/node-exporter/fleet.prom";
        description = ''
          Where `fleet review` writes the Prometheus metrics (`fleet metrics`' text, replaced by rename): point
          it into node-exporter's textfile collector directory to scrape them. The directory must exist.
        '';
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = config.services.openssh.sftpServerExecutable == "internal-sftp";
        message = ''
          services.fleet-server needs services.openssh.sftpServerExecutable = "internal-sftp" (the hosts' Match
          blocks force internal-sftp, and sshd needs the subsystem to be the same).'';
      }
    ];

    warnings = map (entry: ''
      services.fleet-server: host ${entry.host} logs in as ${entry.user}, a name NixOS cannot declare (32
      characters); fleet setup creates it with useradd, which users.mutableUsers = false would undo.'')
      undeclaredUsers;

    services.openssh = {
      enable = true;
      sftpServerExecutable = "internal-sftp";
      # Last in sshd_config. `Match all` ends any Match block above it, so that the Include applies to everyone;
      # a missing file is ignored by sshd (no host can log in until fleet-setup writes it).
      extraConfig = lib.mkAfter ''
        # fleet: the hosts' Match blocks, written by fleet-setup.service with fleet sshd-config --match-only.
        Match all
        Include ${matchFile}
      '';
    };

    users.users = builtins.listToAttrs (map
      (entry: {
        name = entry.user;
        value = {
          # Not isSystemUser: NixOS gives system users IDs from 400-999, too few for a fleet of a thousand
          # hosts. A normal user's ID comes from 1000-29999; its home, shell and password are set below.
          isNormalUser = true;
          group = entry.user;
          # fleet setup adopts only users with exactly this comment.
          description = "fleet host ${entry.host}";
          home = "/";
          createHome = false;
          shell = "${pkgs.shadow}/bin/nologin";
          # "*": no password, key logins allowed (a locked "!" would be refused by an sshd without PAM).
          hashedPassword = "*";
        };
      })
      declaredUsers);
    users.groups = builtins.listToAttrs (map (entry: { name = entry.user; value = { }; }) declaredUsers);

    environment.systemPackages = [ cfg.package ];
    # `fleet status`, `fleet publish` by hand see the same directories as the services.
    environment.variables = fleetEnvironment;

    systemd.services.fleet-setup = {
      description = "fleet: hosts' users, authorized keys, chroots and sshd Match blocks";
      wantedBy = [ "multi-user.target" ];
      before = [ "sshd.service" ];
      after = [ "local-fs.target" ];
      environment = fleetEnvironment;
      serviceConfig = {
        Type = "oneshot";
        ExecStart = setupScript;
        UMask = "0022";
      };
    };

    systemd.services.fleet-publish = {
      description = "fleet: publish the changed hosts into their chroots";
      after = [ "fleet-setup.service" ];
      path = [ pkgs.git config.nix.package ];
      environment = repositoryEnvironment;
      startAt = cfg.publish.startAt;
      serviceConfig = {
        Type = "oneshot";
        # Setup first (a new host needs its user and chroot); its failure for one host does not stop the
        # others from being published ("-").
        ExecStartPre = "-${setupScript}";
        ExecStart = "${fleet} publish --repo ${repo}";
        UMask = "0022";
      };
    };

    systemd.services.fleet-update = lib.mkIf cfg.autoUpdate.enable {
      description = "fleet: update the hosts' flake inputs, build them, publish what built";
      after = [ "fleet-setup.service" "network-online.target" ];
      wants = [ "network-online.target" ];
      path = [ pkgs.git config.nix.package ];
      environment = repositoryEnvironment;
      startAt = cfg.autoUpdate.startAt;
      serviceConfig = {
        Type = "oneshot";
        # Exits 1 (this unit failed) when a host did not build with the new inputs. --commit: an update needs a
        # repository without uncommitted changes, so the lock files it writes are committed.
        ExecStart = builtins.concatStringsSep " " ([ fleet "update" "--repo" repo "--commit" "--policy" cfg.autoUpdate.policy ]
          ++ builtins.concatMap (input: [ "--input" input ]) cfg.autoUpdate.inputs);
        UMask = "0022";
      };
    };

    systemd.services.fleet-review = {
      description = "fleet: ingest the hosts' reports, tell the hooks, write the metrics";
      after = [ "fleet-setup.service" ];
      environment = fleetEnvironment;
      serviceConfig = {
        Type = "oneshot";
        # Exits 0 whatever state the hosts are in; 1 (this unit failed) when state.db or the metrics file
        # cannot be used.
        ExecStart = "${fleet} review --repo ${repo} --metrics-file ${cfg.review.metricsFile}";
        UMask = "0022";
      };
    };

    systemd.timers.fleet-review = {
      description = "fleet: review the hosts every ${cfg.review.interval}";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "1min";
        OnUnitActiveSec = cfg.review.interval;
        AccuracySec = "1s";
        Unit = "fleet-review.service";
      };
    };

    # Freeze protection: re-signs manifests whose expiry is less than half of fleet.toml's manifest_ttl_seconds
    # away (same generation, new expiry), so a host never sees its current manifest expire. A quarter of the
    # shortest TTL allowed (an hour); cheap: no build, no git (Sources/ServerSetup/ServerUnits.swift, the same).
    systemd.services.fleet-refresh = {
      description = "fleet: re-sign the manifests about to expire (freeze protection)";
      after = [ "fleet-setup.service" ];
      environment = fleetEnvironment;
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${fleet} publish --repo ${repo} --refresh";
        UMask = "0022";
      };
    };

    systemd.timers.fleet-refresh = {
      description = "fleet: re-sign expiring manifests every 15min";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "3min";
        OnUnitActiveSec = "15min";
        Unit = "fleet-refresh.service";
      };
    };

    systemd.paths.fleet-publish = lib.mkIf cfg.publish.onCommit {
      description = "fleet: publish when the fleet repository's HEAD moves";
      wantedBy = [ "paths.target" ];
      pathConfig.PathChanged = "${cfg.repository}/.git/logs/HEAD";
    };
  };
}
