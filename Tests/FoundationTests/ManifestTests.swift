import CommandRunner
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Testing

@Suite("Signed manifests and Nix-format keys")
struct ManifestTests {
    static func sample(host: String = "web-01", generation: UInt64 = 7) throws -> Manifest {
        Manifest(
            host: try HostName(host), generation: generation, publishedAt: "2026-11-22T00:00:00Z",
            sourceCommit: "abc123",
            snapshot: .init(path: "/snapshots/7.tar.zst", size: 42, sha256: String(repeating: "0", count: 64)),
            contentDigest: "d", operation: .switch, attribute: "web-01")
    }

    @Test func signedManifestsVerifyAndRoundTrip() throws {
        let key = try SigningKey(generatingWithName: "fleet-1")
        let manifest = try Self.sample()
        let file = try manifest.signed(with: key)
        #expect(try Manifest.verify(file, with: key.publicKey) == manifest)
        // Two lines: the JSON payload and the signature.
        let lines = String(decoding: file, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 2 && lines[0].hasPrefix("{") && lines[1].hasPrefix("fleet-1:"))
    }

    @Test func everyFlippedByteIsRefused() throws {
        let key = try SigningKey(generatingWithName: "fleet-1")
        let file = try Self.sample().signed(with: key)
        let newline = try #require(file.firstIndex(of: 0x0a))
        for index in stride(from: 0, to: newline, by: 7) {
            var altered = file
            altered[index] ^= 0x01
            #expect(throws: ProtocolError.self) { try Manifest.verify(altered, with: key.publicKey) }
        }
    }

    @Test func anotherKeyOrAnotherSignerIsRefused() throws {
        let key = try SigningKey(generatingWithName: "fleet-1")
        let impostor = try SigningKey(generatingWithName: "fleet-1")
        let stranger = try SigningKey(generatingWithName: "other-1")
        let manifest = try Self.sample()
        #expect(throws: ProtocolError.badSignature(keyName: "fleet-1")) {
            try Manifest.verify(try manifest.signed(with: impostor), with: key.publicKey)
        }
        #expect(throws: ProtocolError.untrustedSigner(found: "other-1", trusted: ["fleet-1"])) {
            try Manifest.verify(try manifest.signed(with: stranger), with: key.publicKey)
        }
    }

    @Test(arguments: [
        "", "{}", "no newline at all", "{\"a\":1}\n", "{\"a\":1}\nfleet-1:AAAA\nextra line\n",
        String(repeating: "x", count: Manifest.sizeLimit + 1),
    ])
    func malformedFilesAreRefusedBeforeParsing(text: String) throws {
        let key = try SigningKey(generatingWithName: "fleet-1")
        #expect(throws: ProtocolError.self) { try Manifest.verify(Array(text.utf8), with: key.publicKey) }
    }

    @Test func hostileSignedPayloadsAreRefused() throws {
        let key = try SigningKey(generatingWithName: "fleet-1")
        for payload in [#"{"format":2}"#, #"{"host":"../etc"}"#, "[1,2,3]", "\u{0}"] {
            let file = Array(payload.utf8) + [0x0a] + Array(try key.sign(Array(payload.utf8)).utf8) + [0x0a]
            #expect(throws: ProtocolError.self) { try Manifest.verify(file, with: key.publicKey) }
        }
    }

    @Test func keysUseNixsFormatAndNixAgrees() async throws {
        let key = try SigningKey(generatingWithName: "fleet.example.org-1")
        let reparsed = try SigningKey(nixFormat: key.nixFormat)
        #expect(reparsed.publicKey == key.publicKey)
        #expect(throws: ProtocolError.self) { try SigningKey(nixFormat: "fleet-1:notbase64!") }
        #expect(throws: ProtocolError.self) { try SigningKey(nixFormat: "no-colon") }
        #expect(throws: ProtocolError.self) { try VerifyingKey(nixFormat: "fleet-1:AAAA") }
        // Nix derives the same public key from our secret key: one key can sign caches too.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/nix") else { return }
        let output = try await Command.run(
            "nix", ["key", "convert-secret-to-public"],
            environment: ["NIX_CONFIG": "experimental-features = nix-command"],
            input: key.nixFormat)
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.trimmingWhitespace() == key.publicKey.nixFormat)
    }

    @Test func hostNamesFollowTheRule() {
        for good in ["a", "web-01", "0a", String(repeating: "b", count: 63)] { #expect(HostName.isValid(good)) }
        for bad in ["", "-a", "A", "a_b", "a.b", "a/b", "..", "é", String(repeating: "b", count: 64), "a\n"] {
            #expect(!HostName.isValid(bad))
        }
    }
}
