import FleetFiles

/// A file `install-units` writes for systemd (a unit) or polkit (a rule): its name and its whole text, and how
/// such files are written and what may go into them. Shared by the host's (`fleet-client install-units`) and
/// the server's (`fleet install-units`) units.
public struct UnitFile: Sendable, Equatable {
    public let name: String
    public let text: String

    public init(name: String, text: String) {
        self.name = name
        self.text = text
    }

    /// What installing did to one file.
    public struct Installed: Sendable, Equatable {
        public enum Status: String, Sendable {
            case written
            case unchanged
        }

        public let path: String
        public let status: Status
    }

    /// Writes `files` into `directory`, each atomically (0644), leaving files that already say the same
    /// untouched. Nothing is written when any target is not a regular file (a link, such as a unit masked
    /// with `systemctl mask`, is left alone and named).
    ///
    /// - Parameter option: the command-line option that named `directory`, for the messages.
    public static func install(_ files: [UnitFile], into directory: String, option: String) throws(UnitFileError)
        -> [Installed]
    {
        guard directory.hasPrefix("/"), !directory.unicodeScalars.contains(where: \.isControl) else {
            throw UnitFileError("\(option) \(String(reflecting: directory)): must be an absolute path")
        }
        do {
            guard let status = try FileStatus.following(directory), status.kind == .directory else {
                throw UnitFileError("\(option) \(directory): no such directory")
            }
            let base = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
            var plans: [(path: String, bytes: [UInt8], current: Bool)] = []
            for file in files {
                let path = (base == "/" ? "" : base) + "/" + file.name
                let bytes = Array(file.text.utf8)
                var current = false
                if let existing = try FileStatus.of(path) {
                    guard existing.kind == .regular else {
                        let what =
                            existing.kind == .symbolicLink ? "a symbolic link (a masked unit?)" : "not a regular file"
                        throw UnitFileError(
                            "\(path) is \(what); nothing was written. Remove it (`systemctl unmask` for a masked "
                                + "unit) and run install-units again.")
                    }
                    let text = try FileIO.readNoFollow(path, limit: 1 << 20)
                    current = existing.permissions == 0o644 && text == bytes
                }
                plans.append((path, bytes, current))
            }
            var installed: [Installed] = []
            for plan in plans {
                if !plan.current { try FileIO.writeAtomically(plan.bytes, to: plan.path, mode: 0o644) }
                installed.append(Installed(path: plan.path, status: plan.current ? .unchanged : .written))
            }
            return installed
        } catch let error as UnitFileError {
            throw error
        } catch {
            throw UnitFileError("\(error)")
        }
    }

    /// Characters a path in a unit file may have: none of them means anything to systemd's parser, nor to a
    /// shell that runs an ExecStartPre line.
    static func isPathCharacter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
            || "/._-+@:,=~".unicodeScalars.contains(scalar)
    }

    /// Why `path` cannot go into a unit file as it is, or nil.
    public static func pathProblem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "must be an absolute path" }
        guard path.utf8.count < 4096, path != "/", !path.hasSuffix("/") else { return "must name a file" }
        guard path.unicodeScalars.allSatisfy(isPathCharacter) else {
            return "may only contain letters, digits and / . _ - + @ : , = ~ (it goes into a unit file as it is)"
        }
        return nil
    }
}

extension Unicode.Scalar {
    fileprivate var isControl: Bool { value < 0x20 || value == 0x7f }
}
