/// Lists of store paths given to `nix-store` on its command line, split so that no invocation's arguments come
/// near the kernel's `ARG_MAX` (2 MiB on Linux, shared with the environment): a closure of thousands of paths
/// does not fit one command line.
public enum PathArguments {
    /// The argument bytes one invocation may use: a quarter of Linux's 2 MiB `ARG_MAX`, leaving the rest to the
    /// environment (NIX_CONFIG, PATH) and to the kernel's per-pointer overhead.
    public static let bytesPerInvocation = 512 << 10

    /// `paths` in order, split into runs that each fit one invocation beside the `fixed` words of its command
    /// line (the program and its other arguments).
    ///
    /// - Parameter limit: the bytes one invocation's arguments may use (each counts its length, a NUL and a
    ///   pointer); tests make it small to see the splitting.
    public static func split(_ paths: [String], besides fixed: [String], limit: Int = bytesPerInvocation) -> [[String]]
    {
        let fixedCost = fixed.reduce(0) { $0 + cost(of: $1) }
        var runs: [[String]] = []
        var run: [String] = []
        var used = fixedCost
        for path in paths {
            if !run.isEmpty, used + cost(of: path) > limit {
                runs.append(run)
                run = []
                used = fixedCost
            }
            run.append(path)
            used += cost(of: path)
        }
        if !run.isEmpty { runs.append(run) }
        return runs
    }

    private static func cost(of argument: String) -> Int { argument.utf8.count + 1 + 8 }
}
