import FleetProtocol

/// What `switch-to-configuration dry-activate` says switching to a system would do to the running units.
///
/// NixOS prints one line per kind, units comma-separated: `would stop the following units: a.service, b.socket`,
/// `would restart the following units: ...`, and the harmless `would reload ...`, `would start ...`, `would NOT
/// stop the following changed units: ...`. A stopped unit (a service with `stopIfChanged`, sshd's default) is
/// started again afterwards; for the connection it carries, that is a restart. Other lines (the activation
/// script's dry run) are ignored.
struct DryActivation: Equatable {
    var stopped: [String] = []
    var restarted: [String] = []

    static let stopPrefix = "would stop the following units: "
    static let restartPrefix = "would restart the following units: "

    /// Whether a line of the output is one this parses (the others need not be kept).
    static func isRelevant(_ line: String) -> Bool {
        line.hasPrefix(stopPrefix) || line.hasPrefix(restartPrefix)
    }

    static func parse(_ lines: [String]) -> DryActivation {
        var result = DryActivation()
        for rawLine in lines {
            let line = String(rawLine.drop { $0 == " " || $0 == "\t" }).trimmingTrailingWhitespace()
            for (prefix, keyPath) in [(stopPrefix, \DryActivation.stopped), (restartPrefix, \.restarted)]
            where line.hasPrefix(prefix) {
                let units = line.dropFirst(prefix.count).split(separator: ",").map {
                    String($0.drop { $0 == " " }).trimmingTrailingWhitespace()
                }
                result[keyPath: keyPath] += units.filter { !$0.isEmpty }
            }
        }
        return result
    }

    /// The units stopped or restarted, each once, in the order given.
    var disrupted: [String] {
        var seen: Set<String> = []
        return (stopped + restarted).filter { seen.insert($0).inserted }
    }
}

/// `[overlays] protect_units`: an overlay apply or removal must not stop or restart the units that keep a
/// host's job alive (its sshd, a CI runner's agent). Before switching to a system whose overlays differ from the
/// applied one's, a run asks `switch-to-configuration dry-activate`; when a protected unit would be disrupted,
/// the policy decides: refuse the switch, or stage the system for the next boot.
enum OverlayProtection {
    enum Verdict: Equatable {
        /// Nothing protected is disrupted (or nothing needs checking): switch as asked.
        case proceed
        /// Do not switch; these protected units would be stopped or restarted.
        case refuse([String])
        /// Make it the boot default without activating it; these protected units would be disrupted now.
        case stageForBoot([String])
    }

    /// Starts the reason a refusal is recorded with in the state, so a later run with `protect_policy = "boot"`
    /// can tell it from a generation that failed by itself and try it again.
    static let refusalMarker = "refused by [overlays] protect_units: "

    /// Whether switching from what is applied to a system with `overlaySet` is an overlay apply or removal that
    /// needs the dry run: protected units are configured, the switch is live, and the overlays' set differs from
    /// the applied system's (`applied`, nil: none, or nothing applied yet).
    static func needsCheck(
        _ configuration: ClientConfiguration.Overlays, operation: String, applied: String?, overlaySet: String?
    ) -> Bool {
        !configuration.protectUnits.isEmpty && operation != Operation.boot.rawValue && applied != overlaySet
    }

    static func verdict(
        _ dryRun: DryActivation, _ configuration: ClientConfiguration.Overlays, operation: String
    ) -> Verdict {
        let hit = dryRun.disrupted.filter(configuration.protectUnits.contains)
        guard !hit.isEmpty else { return .proceed }
        // `test` promises to leave the boot default alone: staging for boot would break that promise.
        guard configuration.protectPolicy == .boot, operation != Operation.test.rawValue else { return .refuse(hit) }
        return .stageForBoot(hit)
    }

    /// What changes, for messages: the overlays in effect now, or that the ones it ran with are removed.
    static func change(overlays: [Overlay], previousSet: String?) -> String {
        guard overlays.isEmpty else {
            return "with the local overlay(s) "
                + overlays.map { "\($0.name) (\($0.digest.prefix(12)))" }.joined(separator: ", ")
        }
        return "without the local overlay(s) it ran with (set \(previousSet?.prefix(12) ?? "unknown"), removed)"
    }

    /// The reason recorded in the state for a refused switch (starts with ``refusalMarker``).
    static func refusal(units: [String], change: String) -> String {
        refusalMarker + "switching to the system \(change) would stop or restart \(units.joined(separator: ", "))"
    }

    /// How the user gets past a refusal, for the run's reason.
    static let howToProceed =
        "the previous system stays. To apply it anyway, set [overlays] protect_policy = \"boot\" in client.toml "
        + "(the next run makes it the boot default without restarting anything; it runs after a reboot, e.g. in "
        + "the [reboot] window), or change the overlays; until then, this generation is not tried again with "
        + "these overlays"
}

extension String {
    fileprivate func trimmingTrailingWhitespace() -> String {
        var result = Substring(self)
        while let last = result.last, last == " " || last == "\t" || last == "\r" { result = result.dropLast() }
        return String(result)
    }
}
