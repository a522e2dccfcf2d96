import CommandRunner
import FleetFiles
import FleetProtocol
import Foundation
import Inventory

/// rsync over ssh to one mirror, with the mirror's host key pinned: fleet writes `known_hosts` itself from
/// `host_key` and gives ssh nothing else to trust (`-F none`, no global file, `StrictHostKeyChecking=yes`), so a
/// push never goes to a machine that is not the mirror, and nothing in root's `~/.ssh/config` (a `ProxyCommand`)
/// takes part.
struct MirrorTransport {
    let mirror: MirrorConfiguration
    /// `<state_dir>/mirrors/<name>`: root 0700, the known_hosts file, filter files, the pulled logs.
    let workDirectory: String

    /// How long rsync waits on a silent connection before it gives up (its `--timeout`).
    static let ioTimeoutSeconds = 120
    static let connectTimeoutSeconds = 20

    init(mirror: MirrorConfiguration, stateDirectory: String) {
        self.mirror = mirror
        self.workDirectory = stateDirectory + "/mirrors/" + mirror.name
    }

    var knownHostsPath: String { workDirectory + "/known_hosts" }
    /// The name ssh looks the host key up by, whatever host `push_to` names.
    var hostKeyAlias: String { "fleet-mirror-" + mirror.name }

    /// Creates the work directory and writes the pinned host key.
    func prepare() throws(MirrorError) {
        do {
            try FileIO.createDirectories(workDirectory, mode: 0o700)
            try FileIO.ensureDirectory(workDirectory, mode: 0o700)
            let line = "\(hostKeyAlias) \(mirror.hostKey.type) \(mirror.hostKey.blob)\n"
            try FileIO.writeAtomically(Array(line.utf8), to: knownHostsPath, mode: 0o600)
        } catch {
            throw MirrorError("mirror \(mirror.name): cannot prepare \(workDirectory): \(error)")
        }
    }

    /// The remote shell for rsync's `-e`: one string that rsync splits on spaces (every part is checked plain).
    /// The mirror's own `ssh_options` come first, so that its `ConnectTimeout` wins over fleet's default.
    var sshCommand: String {
        (["ssh", "-F", "none"] + mirror.sshOptions + [
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=\(knownHostsPath)",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "HostKeyAlias=\(hostKeyAlias)",
            "-o", "ConnectTimeout=\(Self.connectTimeoutSeconds)",
        ]).joined(separator: " ")
    }

    /// Writes a filter file (rsync's merge-file syntax) in the work directory and returns its path.
    func writeFilter(_ name: String, rules: [String]) throws(MirrorError) -> String {
        let path = workDirectory + "/" + name
        do {
            try FileIO.writeAtomically(Array((rules.joined(separator: "\n") + "\n").utf8), to: path, mode: 0o600)
        } catch {
            throw MirrorError("mirror \(mirror.name): cannot write \(path): \(error)")
        }
        return path
    }

    /// Runs rsync with `arguments` (before them: `-e`, the I/O timeout) and returns what it said. Status 24 (files
    /// vanished while being sent: a publish's temporary files) is success; anything else is an error naming the
    /// mirror and the fix.
    @discardableResult
    func rsync(_ arguments: [String], pass: String, alsoSuccessful: Set<Int32> = []) async throws(MirrorError)
        -> CommandOutput
    {
        let full = ["-e", sshCommand, "--timeout=\(Self.ioTimeoutSeconds)"] + arguments
        let output: CommandOutput
        do {
            output = try await Command.run("rsync", full)
        } catch {
            throw MirrorError("mirror \(mirror.name): cannot run rsync (\(error)); install rsync on this server")
        }
        guard output.exitCode != 0 && output.exitCode != 24 && !alsoSuccessful.contains(output.exitCode) else {
            return output
        }
        throw MirrorError(
            "mirror \(mirror.name) (\(mirror.pushTo)): the \(pass) pass failed, rsync exited with status "
                + "\(output.exitCode): \(Self.lastLines(output.standardError)); \(fix(for: output))")
    }

    /// What to do about a failed rsync, from what ssh and rsync said.
    func fix(for output: CommandOutput) -> String {
        let text = output.standardError
        let fleetToml = "[[mirrors]] \(mirror.name) in fleet.toml"
        if text.contains("Host key verification failed") || text.contains("REMOTE HOST IDENTIFICATION") {
            return "the server at \(mirror.pushTo.host) did not present the host_key of \(fleetToml): check that "
                + "host_key is the mirror's /etc/ssh/ssh_host_ed25519_key.pub and push_to names the mirror"
        }
        if text.contains("Permission denied") {
            return "\(mirror.pushTo.sshDestination) refused the login: authorize this server's key (ssh_options -i) "
                + "for \(mirror.pushTo.user ?? "that user") on the mirror"
        }
        if output.exitCode == 255 || text.contains("Connection refused") || text.contains("timed out")
            || text.contains("Could not resolve") || text.contains("No route")
        {
            return "the mirror is unreachable: check that sshd runs on \(mirror.pushTo.host) and the port "
                + "(ssh_options -p) in \(fleetToml), then run `fleet mirror push \(mirror.name)` again"
        }
        if text.contains("No such file or directory") {
            return "create the mirror's chroot root \(mirror.pushTo.path) by running `fleet setup` on the mirror"
        }
        return "fix the cause above, then run `fleet mirror push \(mirror.name)` again"
    }

    /// The last few lines of rsync's error output, on one line.
    static func lastLines(_ text: String) -> String {
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let shown = lines.suffix(4).joined(separator: " / ")
        return shown.isEmpty ? "(no output)" : String(shown.prefix(800))
    }
}
