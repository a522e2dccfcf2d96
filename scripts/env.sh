# Sourced by the scripts: the toolchain and Nix settings for an offline, single-user, root Nix.
# `build-users-group =`: Debian's nix-bin creates no nixbld group, and a root Nix defaults to building as
# nixbld users, so without it every build fails on a fresh machine ("the group 'nixbld' ... does not exist").
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH="/opt/swift/usr/bin:$PATH"
fi
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false\nbuild-users-group ='
