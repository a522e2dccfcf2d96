# The web role: every host with roles = ["web"] in fleet.toml imports it through its fleet-roles.nix.
{
  motd = [ "This host serves the web site." ];
  files."nginx.conf" = "worker_processes 2;\n";
}
