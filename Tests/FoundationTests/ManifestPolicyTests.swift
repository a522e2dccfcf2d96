import FleetProtocol
import FleetTestSupport
import Testing

/// The rules a host holds a verified manifest to, in memory: each refusal by its reason, and what passes.
@Suite("Manifest acceptance")
struct ManifestPolicyTests {
    let host: HostName
    let good: Manifest

    init() throws {
        host = try HostName("alpha")
        good = Manifest(
            host: host, generation: 5, publishedAt: "2026-12-04T00:00:00Z", sourceCommit: "abc",
            snapshot: .init(path: "/snapshots/5.tar.zst", size: 100, sha256: "s5"), contentDigest: "c5",
            operation: .switch, attribute: "alpha", toplevel: "/nix/store/0c0f4kjlm6mmgd1abh2gxv3s4n2b6x4z-system")
    }
    static let seen = ManifestPolicy.Seen(generation: 5, contentDigest: "c5", snapshotSHA256: "s5")

    @Test func aGoodManifestPassesFreshOrSeenBefore() {
        #expect(ManifestPolicy.refusal(of: good, for: host, lastSeen: nil) == nil)
        #expect(ManifestPolicy.refusal(of: good, for: host, lastSeen: Self.seen) == nil)
        var newer = good
        newer.generation = 6
        newer.snapshot.path = "/snapshots/6.tar.zst"
        #expect(ManifestPolicy.refusal(of: newer, for: host, lastSeen: Self.seen) == nil)
    }

    @Test(arguments: [
        ("another host", "signed for host beta"), ("older", "lower than generation 5"),
        ("twin", "reuses generation 5"), ("twin snapshot", "reuses generation 5"),
        ("elsewhere", "names the snapshot"), ("attribute", "not a plain Nix attribute"),
        ("toplevel", "not a Nix store path"), ("size", "outside 0..."), ("negative", "outside 0..."),
        ("zero", "is not a generation"), ("huge", "is not a generation"),
    ])
    func eachRuleRefusesByName(change: String, reason: String) throws {
        var manifest = good
        switch change {
        case "another host": manifest.host = try HostName("beta")
        case "older": manifest.generation = 4
        case "twin": manifest.contentDigest = "other"
        case "twin snapshot": manifest.snapshot.sha256 = "other"
        case "elsewhere": manifest.snapshot.path = "/../beta/snapshots/5.tar.zst"
        case "attribute": manifest.attribute = "alpha.config"
        case "toplevel": manifest.toplevel = "/etc/shadow"
        case "size": manifest.snapshot.size = ManifestPolicy.snapshotLimit + 1
        case "negative": manifest.snapshot.size = -1
        case "zero": manifest.generation = 0
        case "huge": manifest.generation = Generation.maximum + 1
        default: Issue.record("unknown change \(change)")
        }
        let refusal = ManifestPolicy.refusal(of: manifest, for: host, lastSeen: Self.seen)
        #expect(refusal?.contains(reason) == true, "\(change): \(refusal ?? "accepted")")
    }

    @Test func uploadNamesAreWrittenAsTheServerReadsThem() {
        let stem = UploadName.stem(time: "20261204T101500123Z", generation: 7)
        #expect(UploadName(UploadName.reportName(stem: stem)) == .report(generation: 7))
        #expect(UploadName(UploadName.logName(stem: stem)) == .log(generation: 7))
        #expect(
            UploadName(UploadName.logName(stem: UploadName.stem(time: "20261204T101500123Z", generation: nil)))
                == .log(generation: nil))
        #expect(UploadName(UploadName.heartbeatName) == .heartbeat)
        #expect(UploadName(UploadName.confirmationName) == .confirmation)
        #expect(ChrootPaths.uploadInProgress("heartbeat.json") == "/logs/.fleet-tmp-heartbeat.json")
        #expect(UploadName("heartbeat.json.tmp") == .invalid && UploadName(".fleet-tmp-x") == .temporary)
        #expect(ChrootPaths.snapshot(12) == "/snapshots/12.tar.zst")
    }
}
