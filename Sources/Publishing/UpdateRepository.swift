import CommandRunner
import FleetFiles

/// The fleet repository as `fleet update` sees it through git: where its commit is, whether its working tree
/// is clean, the scratch copy the update works in, and the commit of the lock files at the end.
///
/// The fleet repository may be a subdirectory of its git repository (`prefix`); git is always run with `-C`,
/// never through a shell.
struct UpdateRepository: Sendable {
    /// The fleet repository (fleet.toml), absolute.
    let path: String
    /// The git working tree's top.
    let top: String
    /// The fleet repository's path under `top` ("" when it is the top), without a trailing slash.
    let prefix: String
    /// HEAD's commit when the update started: what the scratch copy is made of.
    let base: String

    /// Opens the git repository holding `path`; refuses a directory that is not in one, or one without commits.
    static func open(_ path: String) async throws(UpdateError) -> UpdateRepository {
        let notGit = UpdateError(
            "\(path) is not a git repository: fleet update changes lock files in a scratch copy of the repository's "
                + "HEAD and commits them; run `git init` there and commit the fleet first")
        guard let top = try? await git(path, ["rev-parse", "--show-toplevel"]), !top.isEmpty else { throw notGit }
        guard let prefix = try? await git(path, ["rev-parse", "--show-prefix"]) else { throw notGit }
        guard let base = try? await git(path, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]), !base.isEmpty
        else {
            throw UpdateError(
                "\(path): the git repository has no commit yet; commit the fleet first (fleet update starts from HEAD)")
        }
        let trimmed = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        return UpdateRepository(path: path, top: top, prefix: trimmed, base: base)
    }

    /// What `git status` lists in the fleet repository: changed, staged and untracked (not ignored) paths.
    func uncommittedChanges() async throws(UpdateError) -> [String] {
        let output = try await Self.git(path, ["status", "--porcelain", "--untracked-files=all", "--", "."])
        return output.split(separator: "\n").map(String.init)
    }

    /// Refuses a working tree with uncommitted changes, or whose HEAD is no longer `base`: an update starts from
    /// HEAD, and would otherwise publish changes that were not built, or commit around them.
    func requireUnchanged() async throws(UpdateError) {
        let changes = try await uncommittedChanges()
        if !changes.isEmpty {
            let shown = changes.prefix(10).joined(separator: "\n  ")
            throw UpdateError(
                "\(path) has uncommitted changes, and fleet update starts from HEAD (\(base.prefix(12))): commit or "
                    + "stash them first; nothing was changed. git status:\n  \(shown)"
                    + (changes.count > 10 ? "\n  … (\(changes.count - 10) more)" : ""))
        }
        let head = try await Self.git(path, ["rev-parse", "HEAD"])
        if head != base {
            throw UpdateError(
                "\(path): HEAD moved from \(base.prefix(12)) to \(head.prefix(12)) during the update; nothing was "
                    + "changed, run fleet update again")
        }
    }

    /// A scratch copy of `base` at `directory` (a shared clone, detached at `base`); returns the fleet
    /// repository's path inside it.
    func makeScratch(at directory: String) async throws(UpdateError) -> String {
        _ = try await Self.git(top, ["clone", "--quiet", "--shared", "--no-checkout", top, directory])
        _ = try await Self.git(directory, ["checkout", "--quiet", "--detach", base])
        return prefix.isEmpty ? directory : directory + "/" + prefix
    }

    /// Commits exactly `files` (paths relative to the fleet repository) with `message`; returns the commit.
    /// Without a configured identity git would refuse, so fleet names itself then.
    func commit(_ files: [String], message: String) async throws(UpdateError) -> String {
        var identity: [String] = []
        if (try? await Self.git(path, ["config", "user.email"]))?.isEmpty ?? true {
            identity = ["-c", "user.name=fleet update", "-c", "user.email=fleet-update@localhost"]
        }
        _ = try await Self.git(path, identity + ["commit", "--quiet", "--no-verify", "-m", message, "--"] + files)
        return try await Self.git(path, ["rev-parse", "HEAD"])
    }

    /// Runs git in `directory`; its trimmed standard output, or an error with git's message.
    @discardableResult
    static func git(_ directory: String, _ arguments: [String]) async throws(UpdateError) -> String {
        let output: CommandOutput
        do {
            output = try await Command.run("git", ["-C", directory] + arguments)
        } catch {
            throw UpdateError("cannot run git: \(error)")
        }
        guard output.succeeded else {
            let message = output.standardError.trimmingWhitespace()
            throw UpdateError(
                "git -C \(directory) \(arguments.joined(separator: " ")) exited with status \(output.exitCode)"
                    + (message.isEmpty ? "" : ": \(message)"))
        }
        return output.standardOutput.trimmingWhitespace()
    }
}
