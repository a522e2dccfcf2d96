import ClientStateStore
import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import Testing

@testable import HostAgent

/// The host side reads the time from the `WallClock` it is given: a test sets the time instead of waiting for
/// it (a reboot window at 03:00, log lines of a known minute).
@Suite("The wall clock, injected")
struct WallClockTests {
    static func at(_ iso: String) throws -> WallClock {
        let seconds = try #require(UTCTime.parseISO(iso))
        return .fixed(Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    /// 2 January 2030 at `hour`:00 in this machine's time zone (the reboot window is local time).
    static func localHour(_ hour: Int) throws -> WallClock {
        let parts = DateComponents(
            calendar: Calendar(identifier: .gregorian), timeZone: .current, year: 2030, month: 1, day: 2, hour: hour)
        return .fixed(try #require(parts.date))
    }

    @Test func aRunLogsLinesAtItsClocksTime() throws {
        let log = RunLog(host: "alpha", limit: 1 << 16, isTerminal: false, clock: try Self.at("2030-01-02T03:04:05Z")) {
            _ in
        }
        log.phase("connecting")
        #expect(String(decoding: log.contents(), as: UTF8.self).contains("2030-01-02T03:04:05Z connecting"))
    }

    /// The reboot policy's window is judged by the clock's time: inside it the reboot command runs (once per
    /// system), outside it the host waits.
    @Test func theRebootWindowIsJudgedByTheClock() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        // A profile whose current generation holds a system, as `nix-env --set` leaves it.
        try FileIO.createDirectories(directory.path("store/system-2"))
        #expect(symlink(directory.path("store/system-2"), directory.path("system-2-link")) == 0)
        #expect(symlink("system-2-link", directory.path("system")) == 0)
        let marker = directory.path("rebooted")
        var configuration = ClientConfiguration(
            host: try HostName("alpha"),
            server: .init(
                address: "fleet.example.org", port: 22, user: "fleet-alpha",
                hostKey: try SSHPublicKey(ClientConfigurationTests.hostKey)),
            fleetPublicKey: try VerifyingKey(nixFormat: try ClientConfigurationTests.fleetKey()))
        configuration.profile = directory.path("system")
        configuration.reboot = .init(
            policy: .window, window: try RebootWindow("02:00-04:00"), command: ["/usr/bin/touch", marker])
        let log = RunLog(host: "alpha", limit: 1 << 16, isTerminal: false) { _ in }
        var state = ClientState()
        state.rebootNeeded = "the booted system is not the profile's"

        await Rebooter(configuration: configuration, log: log, clock: try Self.localHour(12))
            .rebootIfDue(&state, stateDirectory: directory.path)
        #expect(try FileStatus.of(marker) == nil, "outside the window: no reboot")
        #expect(String(decoding: log.contents(), as: UTF8.self).contains("waiting for the reboot window 02:00-04:00"))

        await Rebooter(configuration: configuration, log: log, clock: try Self.localHour(3))
            .rebootIfDue(&state, stateDirectory: directory.path)
        #expect(try FileStatus.of(marker) != nil, "inside the window: the reboot command ran")
        #expect(state.rebootRequestedFor == directory.path("store/system-2"))
    }
}
