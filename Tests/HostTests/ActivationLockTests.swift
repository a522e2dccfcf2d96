import CommandRunner
import FleetProtocol
import FleetTestSupport
import Foundation
import Testing

@testable import HostAgent

/// A run and another activation (a hand-run `nixos-rebuild switch`) never overlap: the run waits for
/// switch-to-configuration's lock, which the other holds (NixSystem.activationLock), instead of starting its
/// own activation, which would exit at once ("Could not acquire lock").
@Suite("Waiting for switch-to-configuration's lock")
struct ActivationLockTests {
    /// A system whose switch-to-configuration records that it ran, and a NixSystem using `lock`.
    static func fixture(_ directory: TestDirectory, activationSeconds: Int = 60) throws -> (NixSystem, String) {
        try directory.makeDirectory("system")
        try directory.makeDirectory("system/bin")
        try directory.writeFile(
            "system/bin/switch-to-configuration", text: "#!/bin/sh\necho \"$1\" > \(directory.path("ran"))\n",
            mode: 0o755)
        var system = NixSystem(
            profile: directory.path("profiles/system"),
            log: RunLog(host: "lock-test", limit: 1 << 20, isTerminal: false) { _ in })
        system.outputDirectory = directory.path
        system.activationLock = directory.path("run/nixos/switch-to-configuration.lock")
        system.activationLockPoll = .milliseconds(100)
        system.timeouts = .init(activationSeconds: activationSeconds)
        return (system, directory.path("system"))
    }

    /// Holds the lock as switch-to-configuration does (flock, exclusive) until the returned descriptor closes.
    static func hold(_ path: String) throws -> Int32 {
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0, flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            throw TestSupportError("cannot lock \(path): \(String(cString: strerror(errno)))")
        }
        return descriptor
    }

    @Test func anActivationWaitsWhileAnotherHoldsTheLock() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let (system, toplevel) = try Self.fixture(directory)
        try FileManager.default.createDirectory(
            atPath: directory.path("run/nixos"), withIntermediateDirectories: true)
        let held = try Self.hold(system.activationLock)
        let activation = Task { try await system.activate(toplevel, operation: "test") }
        try await Task.sleep(for: .milliseconds(800))
        #expect(!FileManager.default.fileExists(atPath: directory.path("ran")), "it ran while the lock was held")
        close(held)
        try await activation.value
        #expect(try String(contentsOfFile: directory.path("ran"), encoding: .utf8) == "test\n")
        // Released again: switch-to-configuration, which takes it itself, must find it free.
        close(try Self.hold(system.activationLock))
    }

    @Test func withoutRunNixosThereIsNoActivationToWaitForAndNothingIsCreated() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let (system, toplevel) = try Self.fixture(directory)
        try await system.activate(toplevel, operation: "test")
        #expect(try String(contentsOfFile: directory.path("ran"), encoding: .utf8) == "test\n")
        #expect(!FileManager.default.fileExists(atPath: directory.path("run")), "no stray run/nixos")
    }

    @Test func aLockHeldPastTheActivationTimeoutFailsTheStepNamingIt() async throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        let (system, toplevel) = try Self.fixture(directory, activationSeconds: 1)
        try FileManager.default.createDirectory(
            atPath: directory.path("run/nixos"), withIntermediateDirectories: true)
        let held = try Self.hold(system.activationLock)
        defer { close(held) }
        do {
            try await system.activate(toplevel, operation: "switch")
            Issue.record("the activation ran while the lock was held")
        } catch {
            #expect(error.step == "activation")
            #expect(error.description.contains("held \(system.activationLock) for 1 s"), "\(error)")
            // The machine is busy, the generation is not at fault.
            #expect(error.systemError.map(RunResult.isLocalFailure(errno:)) == true)
        }
        #expect(!FileManager.default.fileExists(atPath: directory.path("ran")))
    }
}
