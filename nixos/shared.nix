# Facts the NixOS modules share with the fleet executables, as plain Nix (builtins only, no nixpkgs).
#
# Keeping them here, free of nixpkgs, lets the test suite evaluate them offline (`nix-instantiate --eval`)
# and compare them with the Swift code they mirror (Tests/FleetTests/NixModulesTests.swift). When the
# Swift side changes, the tests say which line here to change.
rec {
  # The keys /etc/fleet/client.toml may hold, as fleet-client's parser accepts them
  # (Sources/FleetProtocol/ClientConfiguration.swift: knownKeys). fleet-client refuses a file
  # with any other key, so client.nix refuses them at evaluation time instead. A new table (say
  # `[rollback]`) goes into `tables`, with a typed option for each of its keys in client.nix.
  clientKeys = {
    top = [
      "host"
      "fleet_public_key"
      "identity_file"
      "state_dir"
      "profile"
      "operation"
      "log_limit_bytes"
      "keep_generations"
      "poll_interval_seconds"
    ];
    tables = {
      server = [
        "address" "port" "user" "host_key" "connect_timeout_seconds" "io_timeout_seconds" "connect_retry_seconds"
      ];
      rollback = [ "confirm_timeout_seconds" "confirm_attempts" ];
      reboot = [ "policy" "window" "command" "booted_system" "current_system" ];
      timeouts = [ "build_seconds" "activation_seconds" ];
      overlays = [ "protect_units" "protect_policy" ];
    };
    # Arrays of tables ([[health_checks]]): the keys of each element.
    tableArrays = {
      health_checks = [ "name" "command" "timeout_seconds" ];
      servers = [ "name" "address" "port" "host_key" ];
    };
  };

  # `fleet-client run` exit statuses that do not mark fleet-client.service failed
  # (Sources/HostAgent/SystemdUnits.swift: successExitStatuses): 10 applied, 13 unreachable (tried again at
  # the next poll), 14 locked (another run, e.g. the page's, is going). 11 failed, 12 refused,
  # 15 rolled back, 16 local failure (no space, state directory not writable) and 17 stale (an expired
  # manifest) do mark it failed.
  successExitStatuses = [ 10 13 14 ];

  # The page's socket: loopback only.
  pageListenStream = "127.0.0.1:9999";

  # The page's sandbox ([Service] of fleet-client-page.service), for client.nix and, in step, install-units
  # (Sources/HostAgent/SystemdUnits.swift). `systemd-analyze security` rates it 2.0 or less
  # (Tests/HostTests/NixModulesTests.swift measures it). The page reads <state_dir> (0755, its files 0644),
  # accepts on the socket systemd passes it, and runs `systemctl start --no-block fleet-client.service`, which
  # talks to systemd over the D-Bus system socket, a path: path-bound AF_UNIX sockets work across network
  # namespaces, so PrivateNetwork= costs it nothing. RestrictAddressFamilies= only filters socket(): accept() on
  # the inherited AF_INET socket needs no AF_INET here. polkit (client.nix) lets its user start that one unit.
  pageHardening = {
    DynamicUser = true;
    NoNewPrivileges = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    PrivateDevices = true;
    PrivateTmp = true;
    PrivateNetwork = true;
    PrivateMounts = true;
    PrivateIPC = true;
    PrivateUsers = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    RemoveIPC = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    KeyringMode = "private";
    DevicePolicy = "closed";
    SystemCallFilter = [ "@system-service" "~@privileged" "~@resources" ];
    SystemCallArchitectures = "native";
    RestrictAddressFamilies = "AF_UNIX";
    IPAddressDeny = "any";
    IPAddressAllow = "localhost";
    UMask = "0077";
  };

  # How often the timer polls: client.toml's poll_interval_seconds, the one source of the interval (the host
  # also reports it to the server, which judges silence by it; Sources/FleetProtocol/ClientConfiguration.swift).
  defaultPollIntervalSeconds = 900;
  pollIntervalRange = { min = 60; max = 7 * 86400; };
  # The interval a client.toml (as builtins.fromTOML reads it) sets the timer to.
  pollIntervalSeconds = clientToml: clientToml.poll_interval_seconds or defaultPollIntervalSeconds;
  # Whole seconds as the shortest systemd time span that says them exactly ("1h", "15min", "90s"), as
  # SystemdUnits.timeSpan(seconds:) writes them for fleet-client install-units.
  timeSpan = seconds:
    if seconds > 0 && seconds - seconds / 3600 * 3600 == 0 then "${toString (seconds / 3600)}h"
    else if seconds > 0 && seconds - seconds / 60 * 60 == 0 then "${toString (seconds / 60)}min"
    else "${toString seconds}s";
  # The random delay added to each poll, unless configured.
  defaultRandomizedDelay = "5min";
  # The first poll after boot (the timer's catch-up after downtime).
  bootDelay = "2min";

  # Host names, as fleet.toml allows them (Sources/FleetProtocol/HostName.swift).
  hostNamePattern = "[a-z0-9][a-z0-9-]{0,62}";

  # A systemd time span such as "15min", "1h 30min" or "90s" (see systemd.time(7)); the units
  # fleet-client install-units accepts.
  timeSpanUnit =
    "(usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d|weeks|week|w"
    + "|months|month|M|years|year|y)";
  timeSpanPattern =
    let part = "[0-9]+(\\.[0-9]+)? *${timeSpanUnit}?"; in " *${part}( *${part})* *";
  isTimeSpan = text: builtins.match timeSpanPattern text != null;

  # The Unix user a host logs in as on the server (Sources/Inventory/HostConfiguration.swift, unixUser):
  # the prefix and the host name, or, past the 32 characters useradd allows, the prefix, the start of the
  # name, "-" and the first 8 hex digits of the name's SHA-256.
  unixUser = prefix: host:
    let plain = prefix + host; in
    if builtins.stringLength plain <= 32 then plain
    else
      prefix + builtins.substring 0 (32 - builtins.stringLength prefix - 9) host + "-"
      + builtins.substring 0 8 (builtins.hashString "sha256" host);
}
