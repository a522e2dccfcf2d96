# fleet and fleet-client, built from this repository with nixpkgs' Swift toolchain and SwiftPM.
#
#   fleet = pkgs.callPackage ./nix/package.nix { };   # bin/fleet (the server)
#   fleet.client                                      # bin/fleet-client (a host), a second output
#
# The SwiftPM dependencies are pinned the nixpkgs way (pkgs/development/compilers/swift/swiftpm2nix): the
# workspace state of a resolved checkout (./swiftpm/workspace-state.json) and one hash per dependency
# (./swiftpm/default.nix), both written by scripts/swiftpm2nix from Package.resolved. Each is fetched with
# fetchgit and linked into .build/checkouts, so SwiftPM resolves nothing and the build needs no network.
#
# It needs Swift 6.2 (Package.swift's tools version): nixpkgs from NixOS/nixpkgs#557896 (Swift 6.2.4) on.
{
  lib,
  swiftPackages,
  fetchgit,
  pkg-config,
  libssh,
  sqlite,
  libarchive,
  version ? "0-unstable",
}:
let
  inherit (swiftPackages) swift swiftpm;
  pins = import ./swiftpm;
  workspaceState = lib.importJSON pins.workspaceStateFile;
  dependencies = workspaceState.object.dependencies;

  # SwiftPM's own pin file for the checkouts below (Package.resolved is not committed: the workspace state is
  # the one record of the pins here). Version 2 of the format: SwiftPM 6 reads it without an originHash.
  pinFile = builtins.toFile "Package.resolved" (builtins.toJSON {
    version = 2;
    pins = map (dependency: {
      inherit (dependency.packageRef) identity kind location;
      state = dependency.state.checkoutState;
    }) dependencies;
  });

  sources = builtins.listToAttrs (map (dependency: {
    name = dependency.subpath;
    value = fetchgit {
      url = dependency.packageRef.location;
      rev = dependency.state.checkoutState.revision;
      hash = pins.hashes.${dependency.subpath}
        or (throw "nix/swiftpm/default.nix has no hash for ${dependency.subpath}: run scripts/swiftpm2nix");
      fetchSubmodules = true;
    };
  }) dependencies);

  # As swiftpm2nix's helpers do: the pins, the workspace state and the checkouts, where SwiftPM looks for them.
  configure = ''
    runHook preConfigure
    mkdir -p .build/checkouts
    install -m 0644 ${pinFile} ./Package.resolved
    install -m 0600 ${pins.workspaceStateFile} ./.build/workspace-state.json
  '' + lib.concatStrings (lib.mapAttrsToList (name: source: ''
    ln -s '${source}' '.build/checkouts/${name}'
  '') sources) + ''
    runHook postConfigure
  '';
in
assert lib.assertMsg (lib.versionAtLeast swift.version "6.2")
  "fleet needs Swift 6.2 or later (Package.swift: swift-tools-version:6.2); this nixpkgs has Swift ${swift.version}. Use nixpkgs with NixOS/nixpkgs#557896 or later.";
swiftPackages.stdenv.mkDerivation {
  pname = "fleet";
  inherit version;

  # The package's sources only (Package.swift names the test targets, so Tests/ too): not .build, the example
  # fleet, the benchmarks or the docs.
  src = builtins.path {
    name = "fleet-source";
    path = ../.;
    filter = path: type:
      let relative = lib.removePrefix (toString ../. + "/") (toString path); in
      builtins.any (top: relative == top || lib.hasPrefix (top + "/") relative)
        [ "Package.swift" "Sources" "Tests" "LICENSE" ];
  };

  outputs = [ "out" "client" ];

  nativeBuildInputs = [ swift swiftpm pkg-config ];
  buildInputs = [ libssh sqlite libarchive ];

  configurePhase = configure;

  # swiftpm's setup hook builds every product (`swift build -c release`); both binaries are then copied out.
  installPhase = ''
    runHook preInstall
    binPath="$(swiftpmBinPath)"
    install -D -m 0755 "$binPath/fleet" "$out/bin/fleet"
    install -D -m 0755 "$binPath/fleet-client" "$client/bin/fleet-client"
    runHook postInstall
  '';

  passthru = {
    # What the tests compare with Package.resolved (Tests/HostTests/NixPackageTests.swift).
    swiftpmPins = map (dependency: {
      inherit (dependency.packageRef) identity location;
      inherit (dependency.state.checkoutState) revision;
      version = dependency.state.checkoutState.version or null;
      hash = pins.hashes.${dependency.subpath} or null;
    }) dependencies;
    inherit sources;
  };

  meta = {
    description = "A pull-based NixOS fleet manager: fleet (the server) and fleet-client (each host)";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
    mainProgram = "fleet";
  };
}
