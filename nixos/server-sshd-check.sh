# sshd -t for fleet-setup.service (nixos/server.nix), usable before sshd has ever started.
#
# Usage: server-sshd-check.sh SSHD_CONFIG
#
# On a first boot /etc/ssh has no host keys yet: NixOS makes them when sshd starts, and fleet-setup runs
# before sshd. A plain `sshd -t` then fails with "no hostkeys available", which would throw away the hosts'
# Match blocks. Like the build-time check of nixpkgs' openssh module, this gives sshd a throwaway key with
# -h, so the check is about the configuration, not about keys that do not exist yet. (sshd still names the
# missing keys on standard error; it makes them itself when it starts.)
set -eu
config=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
ssh-keygen -q -t ed25519 -N '' -C fleet-setup-check -f "$scratch/key"
sshd -t -f "$config" -h "$scratch/key"
