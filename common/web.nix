# Shared by the hosts that serve web traffic.
{
  motd = [ "This host serves the web site." ];
  files."nginx.conf" = "worker_processes 2;\n";
}
