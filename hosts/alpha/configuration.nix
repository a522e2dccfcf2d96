{
  motd = [ "alpha: front web server." ];
}
