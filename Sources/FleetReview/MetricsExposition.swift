import FleetProtocol

/// `fleet metrics`: the statuses in Prometheus' text exposition format (version 0.0.4), for node-exporter's
/// textfile collector (`fleet metrics --output /var/lib/node-exporter/fleet.prom`, written by rename so the
/// collector never reads half a file) or any scraper of standard output.
///
/// Only host names (`^[a-z0-9][a-z0-9-]{0,62}$`) and fixed words appear in labels, never host-written text.
public enum MetricsExposition {
    public static func render(_ rows: [HostStatus], buildFailures: [String: Int], at now: Int64) -> String {
        var text = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for sample in samples { text += "\(name){\(sample.labels)} \(sample.value)\n" }
        }
        func host(_ row: HostStatus) -> String { "host=\"\(row.host)\"" }

        family(
            "fleet_host_published_generation", "gauge",
            "Generation in the host's chroot manifest (0 when nothing is published).",
            rows.map { (host($0), String($0.publishedGeneration ?? 0)) })
        family(
            "fleet_host_applied_generation", "gauge",
            "Generation the host last reported running (0 when unknown).",
            rows.map { (host($0), String($0.appliedGeneration ?? 0)) })
        family(
            "fleet_host_state", "gauge",
            "1 for the host's state in fleet status (up-to-date, pending, failed, rolled-back, silent, "
                + "never-seen), 0 for the others.",
            rows.flatMap { row in
                HostState.allCases.map { state in
                    ("\(host(row)),state=\"\(state.rawValue)\"", row.state == state ? "1" : "0")
                }
            })
        family(
            "fleet_host_up_to_date", "gauge", "1 when the host runs its published generation.",
            rows.map { (host($0), $0.state == .upToDate ? "1" : "0") })
        family(
            "fleet_host_last_seen_timestamp_seconds", "gauge",
            "When the server last received a report, log, heartbeat or confirmation from the host "
                + "(Unix time; absent when never).",
            rows.compactMap { row in
                guard let lastSeen = row.lastSeen, let seconds = UTCTime.parseISO(lastSeen) else { return nil }
                return (host(row), String(seconds))
            })
        family(
            "fleet_host_reboot_needed", "gauge", "1 when the host reported that running its system needs a reboot.",
            rows.map { (host($0), $0.rebootNeeded == true ? "1" : "0") })
        family(
            "fleet_host_upload_warnings", "gauge",
            "Problems with the host's uploads: refused files in its logs/ and other warnings of the last ingest.",
            rows.map { (host($0), String($0.warningCount)) })
        family(
            "fleet_host_build_failures_total", "counter",
            "Failed server-side builds of the host's configuration (build-failed events).",
            rows.map { (host($0), String(buildFailures[$0.host] ?? 0)) })
        family(
            "fleet_hosts", "gauge", "Hosts per state.",
            HostState.allCases.map { state in
                ("state=\"\(state.rawValue)\"", String(rows.filter { $0.state == state }.count))
            })
        text += "# HELP fleet_status_timestamp_seconds When these metrics were computed (Unix time).\n"
        text += "# TYPE fleet_status_timestamp_seconds gauge\n"
        text += "fleet_status_timestamp_seconds \(now / ReviewTime.nanosecondsPerSecond)\n"
        return text
    }
}
