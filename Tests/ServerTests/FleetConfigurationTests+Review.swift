import FleetProtocol
import FleetTestSupport
import Inventory
import Testing

/// fleet.toml's keys for the review side: poll intervals and silence, history and pruning, hooks.
extension FleetConfigurationTests {
    @Test func reviewKeysHaveDefaultsAndHostsOverrideThem() throws {
        var configuration = try parse("[hosts.a]\n[hosts.b]\n")
        var a = try #require(configuration.host(named: "a"))
        #expect(a.pollIntervalSeconds == 900 && a.silentAfterIntervals == 3 && a.silenceLimitSeconds == 2700)
        #expect(configuration.server.reportHistory == 100 && configuration.server.logsKeep == 20)
        #expect(configuration.hooks.isEmpty)

        configuration = try parse(
            """
            [server]
            report_history = 10
            logs_keep = 3
            [defaults]
            poll_interval_seconds = 300
            silent_after_intervals = 4
            [hosts.a]
            poll_interval_seconds = 60
            [hosts.b]
            silent_after_intervals = 1
            [[hooks]]
            command = ["/usr/local/bin/notify", "--channel", "ops"]
            events = ["host-failed", "host-rolled-back", "host-failed"]
            timeout_seconds = 5
            [[hooks]]
            command = ["/usr/local/bin/log-everything"]
            """)
        a = try #require(configuration.host(named: "a"))
        let b = try #require(configuration.host(named: "b"))
        #expect(a.pollIntervalSeconds == 60 && a.silentAfterIntervals == 4 && a.silenceLimitSeconds == 240)
        #expect(b.pollIntervalSeconds == 300 && b.silentAfterIntervals == 1)
        #expect(configuration.server.reportHistory == 10 && configuration.server.logsKeep == 3)
        #expect(
            configuration.hooks == [
                HookConfiguration(
                    command: ["/usr/local/bin/notify", "--channel", "ops"], events: [.hostFailed, .hostRolledBack],
                    timeoutSeconds: 5),
                HookConfiguration(
                    command: ["/usr/local/bin/log-everything"], events: HookEventKind.allCases, timeoutSeconds: 10),
            ])
        #expect(configuration.hooks[0].receives(.hostFailed) && !configuration.hooks[0].receives(.published))
    }

    @Test func badReviewKeysAreEachNamed() throws {
        let found = try problems(
            """
            [server]
            logs_keep = 0
            report_history = "lots"
            [defaults]
            poll_interval_seconds = 0
            silent_after_intervals = 1001
            [hosts.a]
            poll_interval_seconds = 604801
            [hosts.b]
            silent_after_intervals = -1
            [[hooks]]
            command = ["notify"]
            [[hooks]]
            events = ["host-exploded"]
            colour = "red"
            [[hooks]]
            command = []
            events = []
            timeout_seconds = 0
            """)
        #expect(found.count == 13, "\(found)")
        for fragment in [
            "[server] key \"logs_keep\"", "[server] key \"report_history\"", "[defaults] key \"poll_interval_seconds\"",
            "[defaults] key \"silent_after_intervals\"", "[hosts.a] key \"poll_interval_seconds\"",
            "[hosts.b] key \"silent_after_intervals\"",
            "[[hooks]] #1 key \"command\": the first element must be an absolute path",
            "[[hooks]] #2: the key \"command\" is required",
            "[[hooks]] #2 key \"events\": \"host-exploded\" is not one of",
            "[[hooks]] #2: unknown key \"colour\"", "[[hooks]] #3 key \"events\": empty",
            "[[hooks]] #3 key \"timeout_seconds\"", "[[hooks]] #3 key \"command\": the first element",
        ] {
            #expect(found.contains { $0.contains(fragment) && $0.contains("fleet.toml") }, "missing: \(fragment)")
        }
        #expect(try problems("hooks = \"x\"\n").first?.contains("\"hooks\" must be an array of tables") == true)
    }
}
