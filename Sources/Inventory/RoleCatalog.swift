import FleetFiles
import FleetProtocol
import Foundation
import TOMLKit

/// The fleet's roles: `roles/<name>/` directories of shared modules, and what fleet.toml says of them.
///
/// A host lists its roles (`roles = ["web", "monitoring"]`, or `[defaults]`'s); a role may include others
/// (`[roles.web] roles = ["base"]`), which come before it. ``expand(_:for:_:)`` turns a host's list into the
/// order its modules are imported in: every role once, each after the roles it includes, so a host's
/// `fleet-roles.nix` imports `base` before `web` whichever way they were named.
public struct RoleCatalog: Sendable, Equatable {
    /// The roles each role includes, for the roles fleet.toml has a `[roles.<name>]` table for.
    public let includes: [String: [String]]

    public static let directory = "roles"
    static let roleKeys = ["roles"]

    public init(includes: [String: [String]] = [:]) { self.includes = includes }

    /// Reads `[roles.<name>]` tables (each with an optional `roles` list of included roles), recording problems.
    static func parse(_ value: (any TOMLValueConvertible)?, repository: String, _ reader: inout TOMLReader)
        -> RoleCatalog
    {
        guard let value else { return RoleCatalog() }
        guard let table = value.table else {
            reader.problem(
                "\(reader.file): \"roles\" at the top level must be a table of roles, e.g. [roles.web] with roles = [\"base\"]"
            )
            return RoleCatalog()
        }
        var includes: [String: [String]] = [:]
        for name in table.keys.sorted() {
            let context = "[roles.\(name)]"
            guard checkName(name, in: context, &reader) else { continue }
            guard let roleTable = table[name]?.table else {
                reader.problem("\(reader.file): \(context) must be a table, e.g. [roles.\(name)] roles = [\"base\"]")
                continue
            }
            reader.checkKeys(roleTable, allowed: roleKeys, in: context)
            includes[name] = reader.stringArray(roleTable, "roles", in: context) ?? []
            for included in includes[name] ?? [] { checkName(included, in: "\(context) key \"roles\"", &reader) }
            checkDirectory(name, repository: repository, in: context, &reader)
        }
        return RoleCatalog(includes: includes)
    }

    /// The roles a host imports, in order (included roles first, each once), or nil with the problems recorded.
    /// `context` is where the list was written (`[hosts.web1]` or `[defaults]`), for the messages.
    func expand(_ roles: [String], for host: String, in context: String, repository: String, _ reader: inout TOMLReader)
        -> [String]?
    {
        var ordered: [String] = []
        var failed = false
        /// Depth first, so a role's included roles come before it; `path` is the chain being expanded.
        func visit(_ role: String, path: [String]) {
            if ordered.contains(role) { return }
            if let start = path.firstIndex(of: role) {
                let cycle = (path[start...] + [role]).joined(separator: " -> ")
                reader.problem(
                    "\(reader.file): host \(host) (\(context) key \"roles\"): the roles include each other in a cycle: \(cycle); remove one of the includes"
                )
                failed = true
                return
            }
            guard Self.checkName(role, in: "\(context) key \"roles\" (host \(host))", &reader) else {
                failed = true
                return
            }
            if includes[role] == nil {
                guard Self.checkDirectory(role, repository: repository, in: "host \(host) (\(context))", &reader) else {
                    failed = true
                    return
                }
            }
            for included in includes[role] ?? [] { visit(included, path: path + [role]) }
            if !ordered.contains(role) { ordered.append(role) }
        }
        for role in roles { visit(role, path: []) }
        return failed ? nil : ordered
    }

    /// Role names follow the host-name rules: they become directory names in every host's tree and in messages.
    @discardableResult
    static func checkName(_ name: String, in context: String, _ reader: inout TOMLReader) -> Bool {
        guard (try? HostName(name)) != nil else {
            reader.problem(
                "\(reader.file): \(context): invalid role name \(quoted(name)): role names follow the host-name rules (\(HostName.rule))"
            )
            return false
        }
        return true
    }

    /// A role needs its directory, `roles/<name>/` (a link to a directory in the repository will do).
    @discardableResult
    static func checkDirectory(_ name: String, repository: String, in context: String, _ reader: inout TOMLReader)
        -> Bool
    {
        var isDirectory: ObjCBool = false
        let path = repository + "/" + directory + "/" + name
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            reader.problem(
                "\(reader.file): \(context): unknown role \(quoted(name)): there is no directory \(directory)/\(name)/ in the repository; create it with a default.nix module, or remove the role"
            )
            return false
        }
        return true
    }
}
