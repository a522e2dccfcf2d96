import FleetTestSupport

/// What the page's button runs in tests, standing in for `systemctl start --no-block fleet-client.service`
/// (there is no systemd here): it starts the real `fleet-client run` in a session of its own, detached from
/// the page as systemd's unit would be, and returns at once.
enum StandInStart {
    /// Writes the script into `directory` and returns it as a start command; the runs' output goes to
    /// `runs.log` there.
    static func command(config: String, in directory: TestDirectory) throws -> [String] {
        let script = directory.path("start-run.sh")
        try directory.writeFile(
            "start-run.sh",
            text: """
                #!/bin/sh
                # Stands in for: systemctl start --no-block fleet-client.service
                exec setsid -f \(FleetFixture.executable("fleet-client")) run --config \(config) \\
                  </dev/null >>\(directory.path("runs.log")) 2>&1

                """, mode: 0o755)
        return [script]
    }
}
