import Glibc
public import SystemPackage

/// An operating-system call on a named path failed.
///
/// The description names the operation, the path and the system's reason, because that is what a
/// sysadmin needs to fix it.
public struct FileSystemError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What was being attempted, e.g. "open", "rename".
    public let operation: String
    public let path: String
    public let errno: Int32
    /// Extra words when errno alone does not say it (e.g. "is a symbolic link").
    public let detail: String?

    public init(_ operation: String, path: String, errno: Int32? = nil, detail: String? = nil) {
        self.operation = operation
        self.path = path
        self.errno = errno ?? Glibc.errno
        self.detail = detail
    }

    /// The failure `code` of `operation` on `path`, as a system call reported it.
    public init(_ operation: String, path: String, code: Errno, detail: String? = nil) {
        self.init(operation, path: path, errno: code.rawValue, detail: detail)
    }

    /// The system's reason as swift-system's type, for callers that branch on it.
    public var code: Errno { Errno(rawValue: errno) }

    public var description: String {
        let reason = detail ?? String(cString: strerror(errno))
        return "\(operation) \(path): \(reason)"
    }

    /// Runs `call`, describing its failure as `operation` on `path`.
    static func attempt<Result>(
        _ operation: String, path: String, _ call: () throws(Errno) -> Result
    ) throws(FileSystemError) -> Result {
        do {
            return try call()
        } catch {
            throw FileSystemError(operation, path: path, code: error)
        }
    }
}
