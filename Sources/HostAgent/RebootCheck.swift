import FleetFiles
import FleetProtocol
import Foundation

/// Whether the machine needs a reboot to run what its profile holds, and whether the policy lets the client
/// reboot it now.
struct RebootCheck {
    let reboot: ClientConfiguration.Reboot

    /// Why a reboot is needed to run `target` (the profile's system), or nil when it is not, or when this is not
    /// a NixOS machine (no booted-system link) and nothing can be said.
    ///
    /// Needed when the booted system's kernel, initrd or kernel modules differ from the target's (activation
    /// cannot replace them), or when the target is not running at all (it was staged with `boot`).
    func reason(target: String?) -> String? {
        guard let target, let booted = try? FileIO.readLink(reboot.bootedSystem) else { return nil }
        for part in ["kernel", "initrd", "kernel-modules"] {
            let bootedPart = Self.resolve(booted + "/" + part)
            let targetPart = Self.resolve(target + "/" + part)
            if bootedPart != targetPart {
                return "the \(part) of \(target) differs from the booted system's (\(booted))"
            }
        }
        if let current = try? FileIO.readLink(reboot.currentSystem), current != target {
            return "\(target) is staged for the next boot; \(current) is running"
        }
        return nil
    }

    /// Where a system's `kernel`, `initrd` or `kernel-modules` link leads (its target as written when it dangles).
    private static func resolve(_ path: String) -> String? {
        (try? FileIO.realPath(path).get()) ?? (try? FileIO.readLink(path))
    }

    /// Whether the policy allows rebooting at `date` (local time of `timeZone`).
    func allowsReboot(at date: Date, timeZone: TimeZone = .current) -> Bool {
        guard reboot.policy == .window, let window = reboot.window else { return false }
        return window.contains(minuteOfDay: Self.minuteOfDay(date, timeZone: timeZone))
    }

    static func minuteOfDay(_ date: Date, timeZone: TimeZone) -> Int {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.hour, .minute], from: date)
        return (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
    }
}
