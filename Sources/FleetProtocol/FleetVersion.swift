/// fleet's version: the one place it is written. Both executables print it (`--version`), every report and
/// heartbeat carries it (`clientVersion`), and the release tarball and Debian packages are named after it.
///
/// A semantic version, `MAJOR.MINOR.PATCH` with an optional `-prerelease`: server and hosts of the same major
/// (in 0.x: the same minor) speak the same chroot contract, so `fleet status` warns about a host whose client is
/// a major version behind.
public struct FleetVersion: Sendable, Equatable, Comparable, CustomStringConvertible {
    /// This build's version. Bump it here, and nowhere else.
    public static let current = FleetVersion(major: 0, minor: 6, patch: 0)

    /// The longest version string a host may report: anything longer is not a version fleet-client writes.
    public static let longestText = 64

    public var major: Int
    public var minor: Int
    public var patch: Int
    /// The part after `-` (e.g. `rc.1`), nil for a release.
    public var prerelease: String?

    public init(major: Int, minor: Int, patch: Int, prerelease: String? = nil) {
        self.major = major
        self.minor = minor
        self.patch = patch
        self.prerelease = prerelease
    }

    /// Parses `MAJOR.MINOR.PATCH[-prerelease]` strictly: ASCII digits without leading zeros (at most 9 each),
    /// a prerelease of ASCII letters, digits, `.` and `-`, and at most ``longestText`` characters in all. Nil
    /// for anything else, so a host-written string that parses is safe to print and store as it is.
    public init?(_ text: String) {
        guard text.utf8.count <= Self.longestText, !text.isEmpty else { return nil }
        let parts = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        let numbers = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard numbers.count == 3 else { return nil }
        var values: [Int] = []
        for number in numbers {
            guard (1...9).contains(number.utf8.count), number.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                number.utf8.count == 1 || number.utf8.first != 0x30, let value = Int(number)
            else { return nil }
            values.append(value)
        }
        var prerelease: String?
        if parts.count == 2 {
            let tail = parts[1]
            guard !tail.isEmpty,
                tail.utf8.allSatisfy({ byte in
                    (0x30...0x39).contains(byte) || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte)
                        || byte == 0x2e || byte == 0x2d
                })
            else { return nil }
            prerelease = String(tail)
        }
        self.init(major: values[0], minor: values[1], patch: values[2], prerelease: prerelease)
    }

    public var description: String {
        "\(major).\(minor).\(patch)" + (prerelease.map { "-\($0)" } ?? "")
    }

    /// Semantic-version order: by the numbers, and a prerelease before its release (prereleases compared as
    /// text, which is enough to order fleet's own).
    public static func < (lhs: FleetVersion, rhs: FleetVersion) -> Bool {
        if (lhs.major, lhs.minor, lhs.patch) != (rhs.major, rhs.minor, rhs.patch) {
            return (lhs.major, lhs.minor, lhs.patch) < (rhs.major, rhs.minor, rhs.patch)
        }
        switch (lhs.prerelease, rhs.prerelease) {
        case (nil, _): return false
        case (_, nil): return true
        case (let left?, let right?): return left < right
        }
    }

    /// What stays compatible: the major version, and in 0.x the minor one (semver's rule for 0.x, as Cargo
    /// reads it: 0.5 and 0.4 may differ as much as 2.0 and 1.0 do).
    public var compatibilitySeries: (major: Int, minor: Int) { major > 0 ? (major, 0) : (0, minor) }

    /// Whether this version is older than `other` by a major version (a whole ``compatibilitySeries``): such a
    /// client may not read what a server of `other` publishes. A newer client, or one of the same series, is not.
    public func isMajorVersionBehind(_ other: FleetVersion) -> Bool {
        compatibilitySeries < other.compatibilitySeries
    }

    /// What `--version` prints: `fleet 0.6.0 (commit 1a2b…)`, or `(commit unknown)` when the build could not
    /// tell which source it was built from (not a git checkout, and no `FLEET_SOURCE_COMMIT` given).
    public static func versionLine(program: String, commit: String) -> String {
        "\(program) \(current) (commit \(commit))"
    }
}
