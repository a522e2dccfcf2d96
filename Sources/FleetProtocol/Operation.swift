/// How a host activates a new configuration: the argument to its `bin/switch-to-configuration`.
public enum Operation: String, Sendable, CaseIterable, Codable {
    /// Activate now and make it the boot default.
    case `switch`
    /// Make it the boot default only; it takes effect at the next reboot.
    case boot
    /// Activate now without touching the boot default.
    case test
}
