import TOMLKit

extension ClientConfiguration {
    /// `[overlays]`: the units an overlay apply or removal must not stop or restart (the job's sshd, a runner's
    /// agent), and what to do when it would.
    public struct Overlays: Sendable, Equatable {
        /// What a run does with a system whose switch would stop or restart a protected unit.
        public enum ProtectPolicy: String, Sendable, Equatable, CaseIterable {
            /// Do not switch: the run fails, the previous system stays.
            case refuse
            /// Make it the boot default without activating it now: it runs after the next reboot.
            case boot
        }

        /// Systemd unit names (`sshd.service`), compared with what `switch-to-configuration dry-activate`
        /// says it would stop or restart.
        public var protectUnits: [String]
        public var protectPolicy: ProtectPolicy

        public init(protectUnits: [String] = [], protectPolicy: ProtectPolicy = .refuse) {
            self.protectUnits = protectUnits
            self.protectPolicy = protectPolicy
        }
    }

    static let overlayKeys = ["protect_units", "protect_policy"]
    /// More would be a list nobody reads; a typo'd list of thousands is a mistake, not a policy.
    public static let protectUnitsLimit = 256
    static let unitTypes = [
        "service", "socket", "target", "mount", "automount", "swap", "path", "timer", "slice", "scope", "device",
    ]

    /// Whether `name` looks like a systemd unit name: `name.type`, at most 255 bytes of letters, digits and
    /// `:_.@-\` (systemd's escapes), so it can be neither a path nor a line of its own in a message.
    public static func isUnitName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...255).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.first != UInt8(ascii: ".")
        else { return false }
        let allowed = Set(":_.@-\\".utf8)
        guard
            bytes.allSatisfy({
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0)
                    || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || allowed.contains($0)
            }), let dot = name.lastIndex(of: "."), dot != name.startIndex
        else { return false }
        return unitTypes.contains(String(name[name.index(after: dot)...]))
    }

    static func parseOverlays(_ table: TOMLTable?, _ reader: inout TOMLReader) -> Overlays {
        guard let table else { return Overlays() }
        reader.checkKeys(table, allowed: overlayKeys, in: "[overlays]")
        var overlays = Overlays()
        if let units = reader.stringArray(table, "protect_units", in: "[overlays]") {
            if units.count > protectUnitsLimit {
                reader.problem(
                    "[overlays] key \"protect_units\": \(units.count) units, at most \(protectUnitsLimit) are allowed")
            } else if let bad = units.first(where: { !isUnitName($0) }) {
                reader.problem(
                    "[overlays] key \"protect_units\": \(quoted(bad)) is not a systemd unit name (e.g. \"sshd.service\": "
                        + "letters, digits, :_.@-\\ and a unit type such as .service, .socket, .target)")
            } else {
                var seen: Set<String> = []
                overlays.protectUnits = units.filter { seen.insert($0).inserted }
            }
        }
        if let text = reader.string(table, "protect_policy", in: "[overlays]") {
            if let policy = Overlays.ProtectPolicy(rawValue: text) {
                overlays.protectPolicy = policy
            } else {
                reader.problem("[overlays] key \"protect_policy\": \(quoted(text)) is not one of refuse, boot")
            }
        }
        return overlays
    }

    func renderedOverlays() -> [String] {
        [
            "",
            "# Units an overlay apply or removal (fleet-client overlay) must not stop or restart; such a system is",
            "# refused (\"refuse\") or made the boot default without activating it (\"boot\").",
            "[overlays]",
            "protect_units = [\(overlays.protectUnits.map(tomlString).joined(separator: ", "))]",
            "protect_policy = \(tomlString(overlays.protectPolicy.rawValue))",
        ]
    }
}
