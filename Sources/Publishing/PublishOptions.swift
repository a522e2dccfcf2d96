/// How a ``Publisher`` runs, fixed when it is made: the flags of `fleet publish` that change what a publish does.
public struct PublishOptions: Sendable, Equatable {
    /// `--build`: build every changed host before publishing it (the build gate), whatever fleet.toml says.
    public var forceBuild: Bool
    /// `--dry-run`: write nothing (no snapshot, manifest, state.db row or digest file) and say what would happen.
    public var dryRun: Bool

    /// `--verify`: read every current snapshot whole and check it against its manifest, even when its file was
    /// hashed before and has not changed since (damage below the filesystem leaves no trace a stat could see).
    public var verifySnapshots: Bool
    /// `--min-generation`: no generation published in this run is lower. For recovery after the server's state
    /// and the chroots were lost before the hosts could report what they have.
    public var minimumGeneration: UInt64?

    public init(
        forceBuild: Bool = false, dryRun: Bool = false, verifySnapshots: Bool = false, minimumGeneration: UInt64? = nil
    ) {
        self.forceBuild = forceBuild
        self.dryRun = dryRun
        self.verifySnapshots = verifySnapshots
        self.minimumGeneration = minimumGeneration
    }
}
