/// Asking the local Nix store which store paths it already holds: `nix-store --check-validity --print-invalid`.
///
/// NixKit runs nothing itself: callers run each invocation (through CommandRunner) and give the output back to
/// ``invalidPaths(in:asked:)``. A closure of thousands of paths does not fit one command line, so the paths are
/// split into invocations whose arguments stay well under the kernel's `ARG_MAX` (2 MiB on Linux, shared with
/// the environment).
public enum StoreValidity {
    /// The argument bytes one invocation may use: a quarter of Linux's 2 MiB `ARG_MAX`, leaving the rest to the
    /// environment (NIX_CONFIG, PATH) and to the kernel's per-pointer overhead.
    public static let argumentBytesPerInvocation = 512 << 10

    /// The program and its fixed arguments.
    public static let executable = "nix-store"
    public static let fixedArguments = ["--check-validity", "--print-invalid"]

    /// The argument lists of the invocations that together ask about every path in `paths`, in order.
    ///
    /// - Parameter limit: the bytes one invocation's arguments may use (each counts its length and a NUL
    ///   and a pointer); tests make it small to see the splitting.
    public static func invocations(for paths: [String], limit: Int = argumentBytesPerInvocation) -> [[String]] {
        let fixedCost = fixedArguments.reduce(executable.utf8.count + 1 + 8) { $0 + $1.utf8.count + 1 + 8 }
        var batches: [[String]] = []
        var batch: [String] = []
        var used = fixedCost
        for path in paths {
            let cost = path.utf8.count + 1 + 8
            if !batch.isEmpty, used + cost > limit {
                batches.append(fixedArguments + batch)
                batch = []
                used = fixedCost
            }
            batch.append(path)
            used += cost
        }
        if !batch.isEmpty { batches.append(fixedArguments + batch) }
        return batches
    }

    /// The paths one invocation printed as invalid (one a line), keeping only those it was asked about, so that
    /// stray output can never add a path to fetch.
    public static func invalidPaths(in standardOutput: String, asked: Set<String>) -> Set<String> {
        Set(
            standardOutput.split(separator: "\n").map { String($0).trimmingWhitespace() }.filter {
                asked.contains($0)
            })
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
