# The API token is a secret: it lives in secrets/beta/api-token in the fleet repository (never in git),
# travels beside this tree, and is installed root 0400 on the host. The configuration only names its path.
{
  motd = [ "beta: API server." ];
  files."api-token-path" = "/var/lib/fleet-client/secrets/api-token\n";
}
