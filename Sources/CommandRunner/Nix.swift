/// What every `nix` (new CLI) invocation needs, whatever the machine's nix.conf says.
public enum Nix {
    /// The new CLI and flakes are still experimental in Nix 2.x: enabled per command, so fleet works on hosts
    /// whose nix.conf does not enable them (and never depends on NIX_CONFIG being set by a unit).
    public static let flakeFlags = ["--extra-experimental-features", "nix-command flakes"]
}
