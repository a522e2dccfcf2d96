import FleetProtocol
import Foundation
import Inventory

/// How often a host says it polls (`pollIntervalSeconds` in its heartbeats and reports, from its client.toml),
/// which is what its silence is judged by: fleet.toml's `poll_interval_seconds` is only what the server expects
/// until the host has said anything, since the host's own timer is set from its client.toml.
///
/// Read from the JSON kept in state.db, so no column is needed and reports ingested before hosts said it
/// simply say nothing.
enum DeclaredPollInterval {
    private struct Fields: Decodable {
        var pollIntervalSeconds: Int?
    }

    /// The interval in an uploaded JSON document, nil when it has none (or is not readable).
    static func read(json: String?) -> Int? {
        guard let json else { return nil }
        let value = (try? JSONDecoder().decode(Fields.self, from: Data(json.utf8)))?.pollIntervalSeconds
        return value.flatMap { ClientConfiguration.pollIntervalRange.contains($0) ? $0 : nil }
    }

    /// The interval a host's silence is judged by, and where it came from: the newest word from the host
    /// (heartbeat or report, by the server's receive time) that says one, else fleet.toml.
    static func judging(
        _ host: HostConfiguration, heartbeat: ReviewStore.HeartbeatRow?, report: ReviewStore.ReportRow?
    ) -> (seconds: Int, source: String) {
        // (received, seconds) of each word that says an interval; the newest wins.
        var said: (received: Int64, seconds: Int)?
        if let heartbeat, let seconds = heartbeat.pollIntervalSeconds {
            said = (heartbeat.received, seconds)
        }
        if let report, let seconds = read(json: report.json), report.received >= (said?.received ?? Int64.min) {
            said = (report.received, seconds)
        }
        if let said { return (said.seconds, "the interval it reported") }
        return (host.pollIntervalSeconds, "fleet.toml's poll_interval_seconds")
    }
}

extension UploadValidator {
    /// A host may poll as often as its timer allows and as rarely as once a week: anything else would make it
    /// never silent (or always), so the upload is refused.
    func checkPollInterval(_ seconds: Int?) -> String? {
        guard let seconds, !ClientConfiguration.pollIntervalRange.contains(seconds) else { return nil }
        return "its pollIntervalSeconds \(seconds) is outside \(ClientConfiguration.pollIntervalRange.lowerBound)…"
            + "\(ClientConfiguration.pollIntervalRange.upperBound)"
    }
}
