# Shared by every example host (linked in as hosts/<host>/common -> ../../common).
{
  motd = [ "Managed by fleet: changes come from the fleet repository, not from this machine." ];
  files."ssh-banner" = "Authorized use only.\n";
}
