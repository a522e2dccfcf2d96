import FleetProtocol
import Foundation

/// The host-local overlays a host states in its reports and heartbeats (`fleet-client overlay`): checked at
/// ingest (a host is not trusted to name them sanely), read back from the JSON kept in state.db for
/// `fleet status`, like ``ConnectAttempts``: no column, and older uploads say nothing.
enum OverlayList {
    /// fleet-client has no cap of its own; more than this on one host is a broken or hostile upload.
    static let limit = 64

    private struct Fields: Decodable {
        var overlays: [RunReport.Overlay]?
    }

    /// What is wrong with a stated list (one line for the host's warnings), nil when it is fine or absent:
    /// names follow the host-name rules (as `overlay add` requires), digests are SHA-256 in lowercase hex.
    static func problem(_ overlays: [RunReport.Overlay]?) -> String? {
        guard let overlays else { return nil }
        if overlays.count > limit { return "it states \(overlays.count) overlays, more than \(limit)" }
        for overlay in overlays {
            guard (try? HostName(overlay.name)) != nil else {
                return "its overlay name \(quoted(String(overlay.name.prefix(80)))) is not a host name"
            }
            guard isDigest(overlay.digest) else {
                return "the digest of its overlay \(overlay.name) is not a SHA-256 in lowercase hex"
            }
        }
        return nil
    }

    /// The overlays a stored document states, nil when none (or when they would not pass ``problem(_:)``).
    static func read(json: String?) -> [RunReport.Overlay]? {
        guard let json,
            let overlays = (try? JSONDecoder().decode(Fields.self, from: Data(json.utf8)))?.overlays,
            !overlays.isEmpty, problem(overlays) == nil
        else { return nil }
        return overlays
    }

    static func isDigest(_ text: String) -> Bool {
        text.utf8.count == 64
            && text.utf8.allSatisfy {
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                    || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
            }
    }
}
