import FleetProtocol
import Foundation

/// Which server served a host's run and which it passed over (client.toml `[[servers]]`), as its reports and
/// heartbeats state them: untrusted strings, checked at ingest like ``OverlayList`` before any of it is kept,
/// and read back from the JSON kept in state.db for `fleet status` (no column; older uploads say nothing).
enum ServerList {
    /// client.toml takes `[server]` and 16 mirrors, so a run passes over at most 16.
    static let limit = 16
    /// fleet-client cuts a reason at 200 characters.
    static let reasonLimit = 200

    /// What is wrong with the stated server and skipped list (one line for the host's warnings), nil when fine:
    /// names are `primary` or follow the host-name rules (as client.toml requires), reasons are short single
    /// lines of printable text.
    static func problem(server: String?, skipped: [RunReport.SkippedServer]?) -> String? {
        if let server, !isName(server) {
            return "the server it names, \(quoted(String(server.prefix(80)))), is not primary or a mirror's name"
        }
        guard let skipped else { return nil }
        if skipped.count > limit { return "it states \(skipped.count) servers passed over, more than \(limit)" }
        for entry in skipped {
            guard isName(entry.name) else {
                return
                    "a server it passed over, \(quoted(String(entry.name.prefix(80)))), is not primary or a mirror's name"
            }
            guard entry.reason.count <= reasonLimit,
                entry.reason.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f })
            else {
                return "the reason it gives for passing over \(entry.name) is longer than \(reasonLimit) characters or "
                    + "holds control characters"
            }
        }
        return nil
    }

    static func isName(_ name: String) -> Bool {
        name == ClientConfiguration.primaryName || (try? HostName(name)) != nil
    }

    private struct Fields: Decodable {
        var server: String?
        var skippedServers: [RunReport.SkippedServer]?
    }

    /// The server and the servers passed over that a stored document states: nil for what it does not state (or
    /// what would not pass ``problem(server:skipped:)``), an empty skipped list as nil.
    static func read(json: String?) -> (server: String?, skipped: [RunReport.SkippedServer]?) {
        guard let json, let fields = try? JSONDecoder().decode(Fields.self, from: Data(json.utf8)),
            problem(server: fields.server, skipped: fields.skippedServers) == nil
        else { return (nil, nil) }
        return (fields.server, fields.skippedServers.flatMap { $0.isEmpty ? nil : $0 })
    }
}
