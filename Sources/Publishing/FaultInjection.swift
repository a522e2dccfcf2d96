import Glibc

/// Named points in a publish where a test can make the process die as `kill -9` would, to prove that a
/// crash at any step leaves every host's previous manifest and snapshot valid.
///
/// Set `FLEET_FAULT_POINT=<point>` or `<point>@<host>`; it has no effect otherwise. Compiled in only in
/// debug builds (the ones the tests run, `FLEET_FAULT_INJECTION`): a release binary ignores the variable.
public enum FaultPoint: String, CaseIterable, Sendable {
    case snapshotWritten = "snapshot-written"  // temporary snapshot complete, not yet renamed
    case snapshotRenamed = "snapshot-renamed"  // snapshot in place, manifest not yet written
    case manifestWritten = "manifest-written"  // temporary manifest complete, not yet renamed
    case manifestRenamed = "manifest-renamed"  // manifest in place, not yet recorded in state.db
    case recorded = "recorded"  // recorded, old snapshots not yet collected
    case staged = "staged"  // rollout: the generation staged in state.db, its manifest not yet in the chroot
    case delivered = "delivered"  // rollout: a staged manifest renamed into the chroot, not yet marked so
    case promoted = "promoted"  // rollout: the next ring recorded, its manifests not yet delivered

    /// The points a publish passes without rings (the others are a rollout's).
    public static let withoutRings: [FaultPoint] = [
        .snapshotWritten, .snapshotRenamed, .manifestWritten, .manifestRenamed, .recorded,
    ]

    static let requested: (point: String, host: String?)? = {
        guard let raw = getenv("FLEET_FAULT_POINT") else { return nil }
        let text = String(cString: raw)
        if let at = text.firstIndex(of: "@") {
            return (String(text[..<at]), String(text[text.index(after: at)...]))
        }
        return (text, nil)
    }()

    #if FLEET_FAULT_INJECTION
        /// Dies with SIGKILL if this point (for this host) was requested.
        func trigger(host: String) {
            guard let requested = Self.requested, requested.point == rawValue else { return }
            if let only = requested.host, only != host { return }
            kill(getpid(), SIGKILL)
        }
    #else
        /// Nothing: a release build has no fault injection.
        @inline(__always) func trigger(host: String) {}
    #endif
}
