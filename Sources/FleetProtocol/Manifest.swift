public import Foundation

/// What a host is told to apply: one signed file, `manifest`, at the top of its chroot.
///
/// The file is two lines: the payload (compact JSON, sorted keys) and the signature over exactly those
/// payload bytes, `keyname:base64`. `head -1 manifest | jq` shows it to a human.
public struct Manifest: Codable, Sendable, Equatable {
    /// Where the snapshot lives inside the chroot, and what it must hash to.
    public struct Snapshot: Codable, Sendable, Equatable {
        /// Path inside the chroot, e.g. `/snapshots/3.tar.zst`.
        public var path: String
        public var size: Int64
        public var sha256: String

        public init(path: String, size: Int64, sha256: String) {
            self.path = path
            self.size = size
            self.sha256 = sha256
        }
    }

    public static let currentFormat = 1
    /// Manifests are small; anything larger is refused before parsing.
    public static let sizeLimit = 64 << 10

    public var format: Int
    public var host: HostName
    /// Strictly increasing per host, within ``Generation/range``.
    public var generation: UInt64
    /// ISO 8601, UTC.
    public var publishedAt: String
    /// The fleet repository's commit (`-dirty` when it had uncommitted changes), or `none`.
    public var sourceCommit: String
    public var snapshot: Snapshot
    /// Hash of everything that decides whether the host must change: tree, secrets, settings, build result.
    public var contentDigest: String
    public var operation: Operation
    /// `nixosConfigurations.<attribute>`.
    public var attribute: String
    /// The built system's store path, when the server built it.
    public var toplevel: String?
    /// Whether `cache/` holds the toplevel's closure.
    public var hasCache: Bool
    /// ISO 8601, UTC: after this a client refuses the manifest as stale (freeze protection), so a validly signed
    /// old manifest served forever (a stale mirror, an attacker in the path) cannot keep a host where it is
    /// unnoticed. The server re-signs an unchanged manifest with a later expiry well before it. Nil only in
    /// manifests of servers before expiries: an older client ignores the key, so no format bump is needed.
    public var expiresAt: String?

    public init(
        host: HostName, generation: UInt64, publishedAt: String, sourceCommit: String, snapshot: Snapshot,
        contentDigest: String, operation: Operation, attribute: String, toplevel: String? = nil, hasCache: Bool = false,
        expiresAt: String? = nil
    ) {
        self.format = Manifest.currentFormat
        self.host = host
        self.generation = generation
        self.publishedAt = publishedAt
        self.sourceCommit = sourceCommit
        self.snapshot = snapshot
        self.contentDigest = contentDigest
        self.operation = operation
        self.attribute = attribute
        self.toplevel = toplevel
        self.hasCache = hasCache
        self.expiresAt = expiresAt
    }

    /// The expiry in seconds since the epoch; nil when there is none or it is not a UTC time.
    public var expirySeconds: Int64? { expiresAt.flatMap(UTCTime.parseISO) }

    /// Whether the server should re-sign it now: less than half of `ttlSeconds` is left before it expires (or it
    /// has no expiry), so a refresh at least daily keeps every host's manifest fresh with a day's margin.
    public func needsRenewal(ttlSeconds: Int, now: Date) -> Bool {
        guard let expiry = expirySeconds else { return true }
        return expiry - Int64(now.timeIntervalSince1970) < Int64(ttlSeconds / 2)
    }

    /// The same manifest (generation, snapshot, content, publish time) expiring `ttlSeconds` after `now`.
    public func renewed(ttlSeconds: Int, now: Date) -> Manifest {
        var manifest = self
        manifest.expiresAt = Manifest.expiry(ttlSeconds: ttlSeconds, now: now)
        return manifest
    }

    /// `now` plus `ttlSeconds`, as a manifest writes it.
    public static func expiry(ttlSeconds: Int, now: Date) -> String {
        UTCTime.iso(now.addingTimeInterval(TimeInterval(ttlSeconds)))
    }

    /// The payload bytes that are signed: compact JSON with sorted keys, no newline.
    public func payload() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self))
    }

    /// The whole manifest file: payload, newline, signature, newline.
    public func signed(with key: SigningKey) throws -> [UInt8] {
        let payload = try payload()
        let signature = try key.sign(payload)
        return payload + [0x0a] + Array(signature.utf8) + [0x0a]
    }

    /// Parses a manifest file and checks its signature against `trustedKey` before reading the payload.
    public static func verify(_ file: [UInt8], with trustedKey: VerifyingKey) throws(ProtocolError) -> Manifest {
        let (payload, signature) = try split(file)
        try trustedKey.verify(signature: signature, of: payload)
        return try decode(payload)
    }

    /// Parses a manifest without checking its signature: for the publisher reading what it wrote itself.
    public static func readUnverified(_ file: [UInt8]) throws(ProtocolError) -> Manifest {
        try decode(split(file).payload)
    }

    static func split(_ file: [UInt8]) throws(ProtocolError) -> (payload: [UInt8], signature: String) {
        guard file.count <= sizeLimit else {
            throw .malformedManifest("\(file.count) bytes, over the limit of \(sizeLimit)")
        }
        guard let newline = file.firstIndex(of: 0x0a) else { throw .malformedManifest("no signature line") }
        let payload = Array(file[..<newline])
        var rest = file[(newline + 1)...]
        if rest.last == 0x0a { rest = rest.dropLast() }
        guard !rest.isEmpty, !rest.contains(0x0a) else {
            throw .malformedManifest("expected exactly one signature line after the payload")
        }
        guard let signature = String(validating: rest, as: UTF8.self) else {
            throw .malformedManifest("signature line is not UTF-8")
        }
        return (payload, signature)
    }

    static func decode(_ payload: [UInt8]) throws(ProtocolError) -> Manifest {
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(payload))
        } catch {
            throw .malformedManifest("payload is not a fleet manifest: \(error)")
        }
        guard manifest.format == currentFormat else {
            throw .malformedManifest(
                "format \(manifest.format) is not supported (this fleet reads format \(currentFormat))")
        }
        if let problem = Generation.problem(with: manifest.generation, "its generation") {
            throw .malformedManifest(problem)
        }
        return manifest
    }
}
