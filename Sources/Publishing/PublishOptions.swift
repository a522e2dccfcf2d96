/// How a ``Publisher`` runs, fixed when it is made: the flags of `fleet publish` that change what a publish does.
public struct PublishOptions: Sendable, Equatable {
    /// `--build`: build every changed host before publishing it (the build gate), whatever fleet.toml says.
    public var forceBuild: Bool
    /// `--dry-run`: write nothing (no snapshot, manifest, state.db row or digest file) and say what would happen.
    public var dryRun: Bool

    public init(forceBuild: Bool = false, dryRun: Bool = false) {
        self.forceBuild = forceBuild
        self.dryRun = dryRun
    }
}
