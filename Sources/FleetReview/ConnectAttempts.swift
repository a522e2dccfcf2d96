import FleetProtocol
import Foundation

/// How hard a host had to try to reach the server: `failedConnectAttempts` in its heartbeats and reports (the
/// connection attempts that failed since it last got through), shown by `fleet status` so that a host that
/// reaches the server only after a storm of retries, or after runs that never got through, is visible.
///
/// Read from the JSON kept in state.db, like ``DeclaredPollInterval``: no column, and older uploads say nothing.
enum ConnectAttempts {
    /// More than any client retries in a year of polls: anything beyond is a hostile or broken upload.
    static let range = 0...10_000_000

    private struct Fields: Decodable {
        var failedConnectAttempts: Int?
        var connectAttempts: Int?
    }

    /// The failed attempts an uploaded JSON document states, nil when none (or out of range).
    static func failed(json: String?) -> Int? {
        guard let json else { return nil }
        let value = (try? JSONDecoder().decode(Fields.self, from: Data(json.utf8)))?.failedConnectAttempts
        return value.flatMap { range.contains($0) ? $0 : nil }
    }
}

extension UploadValidator {
    /// Counts of attempts must be counts: refused at ingest otherwise, naming the field.
    func checkAttempts(_ values: [(String, Int?)]) -> String? {
        for case (let name, let value?) in values where !ConnectAttempts.range.contains(value) {
            return
                "its \(name) \(value) is outside \(ConnectAttempts.range.lowerBound)…\(ConnectAttempts.range.upperBound)"
        }
        return nil
    }
}
