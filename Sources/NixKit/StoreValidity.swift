/// Asking the local Nix store which store paths it already holds: `nix-store --check-validity --print-invalid`.
///
/// NixKit runs nothing itself: callers run each invocation (through CommandRunner) and give the output back to
/// ``invalidPaths(in:asked:)``. A closure of thousands of paths is split into several invocations
/// (``PathArguments``).
public enum StoreValidity {
    /// The program and its fixed arguments.
    public static let executable = "nix-store"
    public static let fixedArguments = ["--check-validity", "--print-invalid"]

    /// The argument lists of the invocations that together ask about every path in `paths`, in order.
    ///
    /// - Parameter limit: as ``PathArguments/split(_:besides:limit:)``'s.
    public static func invocations(for paths: [String], limit: Int = PathArguments.bytesPerInvocation) -> [[String]] {
        PathArguments.split(paths, besides: [executable] + fixedArguments, limit: limit).map { fixedArguments + $0 }
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
