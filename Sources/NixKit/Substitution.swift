/// How many store paths Nix substitutes at once, and the options that say so for the running Nix version.
public enum Substitution {
    /// Substitutions at once: the downloads are local files, so this bounds decompression and store writes.
    public static let parallelJobs = 8

    /// `(major, minor)` from `nix-store --version` (`nix-store (Nix) 2.8.0`), or nil when it says something else.
    public static func version(fromVersionOutput output: String) -> (major: Int, minor: Int)? {
        guard let word = output.split(whereSeparator: \.isWhitespace).last else { return nil }
        let parts = word.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, let major = Int(parts[0]),
            let minor = Int(parts[1].prefix(while: \.isNumber))
        else { return nil }
        return (major, minor)
    }

    /// The `--option` pairs that let `nix-store --realise` of an output path substitute `jobs` paths at once while
    /// building nothing.
    ///
    /// Nix 2.16 added `max-substitution-jobs` (NixOS/nix#8299); there `max-jobs 0` forbids local builds and
    /// substitutions have their own bound. Before 2.16 (Debian's 2.8 included) a substitution goal waits for one
    /// of the local build slots, `max(1, max-jobs)` (libstore/build/substitution-goal.cc, `tryToRun`), so
    /// `max-jobs 0` means one download at a time, and `max-jobs` is what bounds parallel substitution. It is set
    /// to `jobs` there: realising an output path (never a `.drv`, which the caller refuses) makes substitution
    /// goals only, which never build, and `builders` is emptied so no remote machine is asked either.
    /// An unknown version gets the old options (newer Nix accepts them; it only substitutes one at a time).
    public static func options(forVersion version: (major: Int, minor: Int)?, jobs: Int = parallelJobs) -> [String] {
        let builders = ["--option", "builders", ""]
        if let version, version.major > 2 || (version.major == 2 && version.minor >= 16) {
            return builders + ["--option", "max-jobs", "0", "--option", "max-substitution-jobs", String(jobs)]
        }
        return builders + ["--option", "max-jobs", String(jobs)]
    }
}
