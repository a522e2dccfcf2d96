{
  motd = [ "gamma: builds things." ];
}
