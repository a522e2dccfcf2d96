# Written by scripts/swiftpm2nix from .build/workspace-state.json and Package.resolved; do not edit.
# A hash marked "not computed" is lib.fakeHash's value: fetchgit fails on it and prints the real one.
{
  workspaceStateFile = ./workspace-state.json;
  hashes = {
    "swift-argument-parser" = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";  # not computed: scripts/swiftpm2nix --prefetch
    "swift-asn1" = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";  # not computed: scripts/swiftpm2nix --prefetch
    "swift-atomics" = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";  # not computed: scripts/swiftpm2nix --prefetch
    "swift-collections" = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";  # not computed: scripts/swiftpm2nix --prefetch
    "swift-crypto" = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";  # not computed: scripts/swiftpm2nix --prefetch
    "swift-nio" = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";  # not computed: scripts/swiftpm2nix --prefetch
    "swift-subprocess" = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";  # not computed: scripts/swiftpm2nix --prefetch
    "swift-system" = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";  # not computed: scripts/swiftpm2nix --prefetch
    "TOMLKit" = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";  # not computed: scripts/swiftpm2nix --prefetch
  };
}
