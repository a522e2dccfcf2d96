import ClientStateStore
import CommandRunner
import FleetProtocol
import Foundation

/// The last step of a run, the reboot policy: whether this machine needs a reboot to run its profile's system,
/// and rebooting it with the configured command when the policy allows it now.
struct Rebooter {
    let configuration: ClientConfiguration
    let log: RunLog
    /// What time it is (timestamps, deadlines, durations): the system's, or a test's.
    var clock: WallClock = .system

    /// Why this machine needs a reboot to run its profile's system, if it does.
    func reason() -> String? {
        RebootCheck(reboot: configuration.reboot).reason(target: profileSystem())
    }

    /// The system the profile's current generation holds.
    private func profileSystem() -> String? {
        (try? NixSystem(profile: configuration.profile, log: log).currentGeneration()?.system) ?? nil
    }

    /// Reboots with the configured command when a reboot is needed, the policy's window is open, and the
    /// client has not already rebooted for this system. Runs last: the report is uploaded and the state saved.
    func rebootIfDue(_ state: inout ClientState, stateDirectory: String) async {
        guard let reason = state.rebootNeeded else { return }
        let check = RebootCheck(reboot: configuration.reboot)
        guard check.allowsReboot(at: clock.now()) else {
            if configuration.reboot.policy == .window, let window = configuration.reboot.window {
                log.phase("a reboot is needed (\(reason)); waiting for the reboot window \(window)")
            } else {
                log.phase("a reboot is needed (\(reason)); the reboot policy is never, so it is left to you")
            }
            return
        }
        let target = profileSystem()
        guard let target, state.rebootRequestedFor != target else {
            log.phase(
                "a reboot is needed (\(reason)), but the client already rebooted for \(target ?? "this system"); not again"
            )
            return
        }
        state.rebootRequestedFor = target
        do { try state.save(stateDirectory: stateDirectory) } catch { log.phase("\(error)") }
        let command = configuration.reboot.command
        log.phase(
            "rebooting inside the window \(configuration.reboot.window?.description ?? ""): \(reason); running \(command.joined(separator: " "))"
        )
        do {
            let output = try await Command.run(command[0], Array(command.dropFirst()), timeout: .seconds(120))
            if !output.succeeded {
                log.phase(
                    "the reboot command exited with status \(output.exitCode): \(output.standardError.trimmingWhitespace())"
                )
            }
        } catch {
            log.phase("the reboot command could not run: \(error)")
        }
    }
}
