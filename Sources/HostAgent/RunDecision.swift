import ClientStateStore
import FleetProtocol

/// Step 3 of a run, pure: given a verified manifest and what the client remembers, is there anything to apply?
enum RunDecision {
    /// The run's result when there is nothing to do (the generation is applied, or it failed or was rolled back
    /// and no newer one is published); nil when the manifest's generation is to be fetched and applied.
    ///
    /// `overlays` is the digest of the host-local overlays in effect (nil: none): a generation applied or failed
    /// with other overlays is applied again, on top of these. A switch refused by `[overlays] protect_units` is
    /// tried again once `protect_policy` is `boot`, which stages it instead of refusing it.
    static func nothingToDo(
        _ manifest: Manifest, state: ClientState, overlays: String? = nil,
        protectPolicy: ClientConfiguration.Overlays.ProtectPolicy = .refuse
    ) -> RunResult? {
        if let applied = state.applied, applied.generation == manifest.generation,
            applied.contentDigest == manifest.contentDigest, applied.overlays == overlays
        {
            return RunResult(
                outcome: .unchanged, reason: "generation \(manifest.generation) is applied and current",
                generation: manifest.generation)
        }
        if let failed = state.failed, failed.generation == manifest.generation,
            failed.contentDigest == manifest.contentDigest, failed.overlays == overlays,
            !(protectPolicy == .boot && failed.reason.hasPrefix(OverlayProtection.refusalMarker))
        {
            let what = failed.state == .rolledBack ? "was rolled back" : "failed"
            return RunResult(
                outcome: .unchanged,
                reason: "generation \(manifest.generation) \(what) at \(failed.at) (\(failed.reason)); it is not "
                    + "tried again until a newer one is published",
                generation: manifest.generation)
        }
        return nil
    }
}
