# Sourced by the scripts: the toolchain and Nix settings for an offline, single-user, root Nix.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH="/opt/swift/usr/bin:$PATH"
fi
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false'
