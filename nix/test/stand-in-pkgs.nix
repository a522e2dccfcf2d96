# A stand-in for nixpkgs' package set, enough to evaluate nix/package.nix offline (the tests, and the root
# flake's outputs with `--override-input nixpkgs` pointing at ./flake.nix here). Packages are records with
# fake store paths; mkDerivation returns its arguments, so the tests can read what the package asks for.
# Nothing here builds.
{ swiftVersion ? "6.2.4" }:
let
  lib = import ./stand-in-lib.nix // {
    assertMsg = condition: message: condition || throw message;
    removePrefix = prefix: text:
      let length = builtins.stringLength prefix; in
      if builtins.substring 0 length text == prefix
      then builtins.substring length (builtins.stringLength text - length) text else text;
    hasPrefix = prefix: text: builtins.substring 0 (builtins.stringLength prefix) text == prefix;
    concatStrings = builtins.concatStringsSep "";
    licenses.asl20 = { shortName = "asl20"; };
  };
  fake = pname: version: rec {
    type = "derivation";
    inherit pname version;
    name = "${pname}-${version}";
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  mkDerivation = attrs:
    let
      name = "${attrs.pname}-${attrs.version}";
      output = outputName: attrs // {
        type = "derivation";
        inherit name outputName;
        outPath = "/nix/store/00000000000000000000000000000000-${name}${if outputName == "out" then "" else "-" + outputName}";
      };
    in
    output "out" // builtins.listToAttrs (map (outputName: { name = outputName; value = output outputName; }) attrs.outputs);
  pkgs = {
    inherit lib;
    swiftPackages = {
      swift = fake "swift" swiftVersion;
      swiftpm = fake "swiftpm" swiftVersion;
      stdenv.mkDerivation = mkDerivation;
    };
    # Like fetchgit, it needs the hash to be a fixed-output derivation at all.
    fetchgit = args: builtins.seq args.hash (fake "source" args.rev // { fetchgitArguments = args; });
    pkg-config = fake "pkg-config" "0.29.2";
    libssh = fake "libssh" "0.11.1";
    sqlite = fake "sqlite" "3.50.2";
    libarchive = fake "libarchive" "3.8.1";
    callPackage = path: overrides:
      let function = import path; in
      function (builtins.intersectAttrs (builtins.functionArgs function) pkgs // overrides);
  };
in
pkgs
