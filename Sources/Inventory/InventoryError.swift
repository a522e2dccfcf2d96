/// Problems with fleet.toml or the state database. Each message names the file, the host and the key.
public struct InventoryError: Error, CustomStringConvertible, Sendable {
    public let problems: [String]

    public init(_ problems: [String]) { self.problems = problems }
    public init(_ problem: String) { self.problems = [problem] }

    public var description: String {
        problems.count == 1
            ? problems[0] : "\(problems.count) problems:\n" + problems.map { "  - " + $0 }.joined(separator: "\n")
    }
}
