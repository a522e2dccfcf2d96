import CommandRunner
import FleetFiles
import FleetProtocol
import Foundation
import NixKit
import Synchronization

/// Builds a host's system with Nix, and owns the profile generations of the machine's system profile.
///
/// This is what `nixos-rebuild` does, done here so that the client knows which profile generation it made and
/// can go back to the one before.
struct NixSystem {
    /// Why a step failed, with the command's exit status when it ran.
    struct Failure: Error, CustomStringConvertible {
        let step: String
        let reason: String
        let exitCode: Int32?
        /// The `errno` when a system call of this machine failed (a full state directory), not a command.
        var systemError: Int32? = nil
        /// This machine failed, not the generation, for a reason that has no `errno` (its store lost paths while
        /// the run used them): the next run tries the generation again.
        var isLocal = false
        /// The server sent something wrong that it can repair (a NAR of its cache damaged on its disk): the run
        /// fails, loudly, but the generation is not recorded as failed, so the next run tries it again once the
        /// server's is right (as with a hostile cache entry, which fails before anything reaches Nix).
        var isServerDamage = false

        var description: String {
            // Name the machine's error when the command's last line does not (Nix's own line is the builder's).
            guard let systemError, case let name = String(cString: strerror(systemError)), !reason.contains(name)
            else { return "\(step) failed: \(reason)" }
            return "\(step) failed: \(reason) (\(name))"
        }
    }

    /// The `errno` a Nix command's failure reports about this machine (it ran out of space, or of quota, or
    /// the store is read-only), so that such a failure is a local failure of the host, tried again by the next
    /// run, and not a failed generation.
    static func machineError(in standardError: String) -> Int32? {
        if standardError.contains("No space left on device") { return ENOSPC }
        if standardError.contains("Disk quota exceeded") { return EDQUOT }
        if standardError.contains("Read-only file system") { return EROFS }
        return nil
    }

    /// A generation of the profile: its number and the store path it points to.
    struct Generation: Equatable {
        let number: Int
        let system: String
    }

    let profile: String
    let log: RunLog
    /// Where a build's, a substitution's and an activation's whole output goes as it comes
    /// (`<dir>/<step>.log`, replaced each time), besides the journal line by line and the uploaded log.
    var outputDirectory: String = FileIO.temporaryDirectory
    /// How long a build (or substitution) and an activation may run before their process group is killed.
    var timeouts = ClientConfiguration.Timeouts()
    /// switch-to-configuration's own lock (nixpkgs' switch-to-configuration-ng): every activation holds it
    /// (flock, exclusive), fleet's as much as a hand-run `nixos-rebuild switch`'s or nixos-upgrade.service's, and
    /// one that finds it held exits at once ("Could not acquire lock"). A run waits for it instead, up to the
    /// activation timeout: it holds it while it changes the profile, so the profile never changes under another
    /// activation, and releases it before running switch-to-configuration, which takes it itself (holding it
    /// then would make that exit).
    var activationLock = "/run/nixos/switch-to-configuration.lock"
    /// How often a waiting run looks again whether the lock is free.
    var activationLockPoll: Duration = .seconds(1)

    /// Builds `nixosConfigurations.<attribute>.config.system.build.toplevel` of the tree's flake, or, without a
    /// flake, `<nixpkgs/nixos>` with `nixos-config` set to the tree's configuration.nix (as NIX_PATH resolves
    /// it). `gcRoot` is the out-link that keeps the result alive until the profile holds it.
    ///
    /// - Returns: the system's store path.
    func build(tree: String, attribute: String, gcRoot: String) async throws(Failure) -> String {
        guard NixAttribute.isValid(attribute) else {
            throw Failure(
                step: "build",
                reason: "the attribute \(String(reflecting: attribute)) is not a plain Nix attribute name",
                exitCode: nil)
        }
        guard let (executable, arguments) = SystemBuild.invocation(tree: tree, attribute: attribute, outLink: gcRoot)
        else {
            throw Failure(
                step: "build",
                reason: "the snapshot has neither flake.nix nor configuration.nix at its top; "
                    + "put one in the host's directory in the fleet repository", exitCode: nil)
        }
        try? FileManager.default.removeItem(atPath: gcRoot)
        let output = try await runStreamed("build", executable, arguments, timeout: timeouts.buildSeconds)
        guard output.exitCode == 0 else {
            throw Failure(
                step: "build",
                reason: "\(executable) exited with status \(output.exitCode)\(Nix.cause(ofFailure: output.tail))",
                exitCode: output.exitCode, systemError: Self.machineError(in: output.tail))
        }
        return try Self.builtSystem(at: gcRoot)
    }

    /// Builds the tree's `nixosConfigurations.<attribute>` extended with the host-local overlays' modules
    /// (`extendModules`), through a wrapper flake written to `wrapperDirectory` whose inputs are the tree and
    /// each overlay by `path:`: the base's own inputs (its flake.lock) and each overlay's stay as they are, and
    /// the wrapper's lock is computed in memory, never written.
    ///
    /// - Returns: the system's store path.
    func buildComposed(
        tree: String, attribute: String, overlays: [(overlay: Overlay, path: String)], wrapperDirectory: String,
        gcRoot: String
    ) async throws(Failure) -> String {
        guard NixAttribute.isValid(attribute) else {
            throw Failure(
                step: "build",
                reason: "the attribute \(String(reflecting: attribute)) is not a plain Nix attribute name",
                exitCode: nil)
        }
        guard (try? FileStatus.of(tree + "/flake.nix"))??.kind == .regular else {
            throw Failure(
                step: "build",
                reason: "local overlays need the host's configuration to be a flake (the snapshot has no flake.nix); "
                    + "remove them with `fleet-client overlay remove`", exitCode: nil)
        }
        for path in [tree, wrapperDirectory] + overlays.map(\.path) where !Self.isPlainPath(path) {
            throw Failure(
                step: "build",
                reason: "\(String(reflecting: path)) cannot be a flake input: use a state_dir whose path has only "
                    + "letters, digits and . _ - / + ", exitCode: nil)
        }
        let names = overlays.map { "\($0.overlay.name) (\($0.overlay.digest.prefix(12)))" }.joined(separator: ", ")
        do {
            try FileIO.removeTree(wrapperDirectory)
            try FileIO.createNewDirectory(wrapperDirectory, mode: 0o700)
            try FileIO.writeAtomically(
                Array(Self.wrapperFlake(tree: tree, attribute: attribute, overlays: overlays).utf8),
                to: wrapperDirectory + "/flake.nix", mode: 0o600)
        } catch {
            throw Failure(
                step: "build", reason: "cannot write the overlay wrapper flake in \(wrapperDirectory): \(error)",
                exitCode: nil, systemError: error.errno)
        }
        try? FileManager.default.removeItem(atPath: gcRoot)
        let arguments =
            Nix.flakeFlags + [
                "build", "path:\(wrapperDirectory)#nixosConfigurations.\"\(attribute)\".config.system.build.toplevel",
                "--out-link", gcRoot, "--no-write-lock-file", "--print-build-logs",
            ]
        let output = try await runStreamed("build", "nix", arguments, timeout: timeouts.buildSeconds)
        guard output.exitCode == 0 else {
            throw Failure(
                step: "build",
                reason: "with the local overlay(s) \(names): nix exited with status \(output.exitCode)"
                    + Nix.cause(ofFailure: output.tail)
                    + " (the overlay may not evaluate against this generation; `fleet-client overlay remove` it)",
                exitCode: output.exitCode, systemError: Self.machineError(in: output.tail))
        }
        return try Self.builtSystem(at: gcRoot)
    }

    /// The wrapper flake: `base` is the tree, `overlay-<name>` each overlay (`flake = false` for a plain
    /// `default.nix`), and the output the base's configuration extended with the overlays' modules in name order.
    static func wrapperFlake(tree: String, attribute: String, overlays: [(overlay: Overlay, path: String)])
        -> String
    {
        var inputs = "    base.url = \"path:\(tree)\";\n"
        var modules: [String] = []
        for (overlay, path) in overlays {
            let input = "overlay-\(overlay.name)"
            switch overlay.kind {
            case .flake:
                inputs += "    \"\(input)\".url = \"path:\(path)\";\n"
                modules.append("inputs.\"\(input)\".nixosModules.default")
            case .module:
                inputs += "    \"\(input)\" = { url = \"path:\(path)\"; flake = false; };\n"
                modules.append("\"${inputs.\"\(input)\"}/default.nix\"")
            }
        }
        return """
            # Written by fleet-client for each build with local overlays; not to be edited.
            {
              inputs = {
            \(inputs)  };
              outputs = { self, base, ... }@inputs: {
                nixosConfigurations."\(attribute)" = base.nixosConfigurations."\(attribute)".extendModules {
                  modules = [ \(modules.joined(separator: " ")) ];
                };
              };
            }

            """
    }

    /// An absolute path that can stand in a `path:` URL and a Nix string as it is.
    static func isPlainPath(_ path: String) -> Bool {
        path.hasPrefix("/") && !path.contains("..")
            && path.unicodeScalars.allSatisfy { scalar in
                scalar.isASCII
                    && (CharacterSet.alphanumerics.contains(scalar) || "._-/+".unicodeScalars.contains(scalar))
            }
    }

    /// Fetches a system built by the server from the local binary cache, evaluating nothing, then empties the
    /// cache: what it held is in the Nix store now, rooted by `gcRoot`.
    ///
    /// The cache is the only substituter, the fleet key the only trusted key, signatures are required, and
    /// nothing is built: the toplevel is an output path (a `.drv` is refused), whose realisation only
    /// substitutes, and no remote builder is configured; a path the cache cannot provide, signed by the fleet
    /// key, fails. Several paths are substituted at once (``Substitution/options(forVersion:jobs:)`` says how
    /// each Nix version bounds that).
    func realise(_ toplevel: String, cache: String, trustedKey: String, gcRoot: String) async throws(Failure) {
        guard Nix.hashPart(ofStorePath: toplevel) != nil, !toplevel.hasSuffix(".drv") else {
            throw Failure(
                step: "substitution", reason: "\(String(reflecting: toplevel)) is not a system's store path",
                exitCode: nil)
        }
        try? FileManager.default.removeItem(atPath: gcRoot)
        let output = try await runStreamed(
            "substitution", "nix-store",
            ["--realise", toplevel, "--add-root", gcRoot]
                + (await substitutionOptions(cache: cache, trustedKey: trustedKey)), timeout: timeouts.buildSeconds)
        guard output.exitCode == 0 else {
            let reason =
                "nix-store --realise from the fleet cache exited with status \(output.exitCode)\(Nix.cause(ofFailure: output.tail))"
            let lost = await Self.pathsLost(below: toplevel, cache: cache)
            guard lost.isEmpty else {
                throw Failure(
                    step: "substitution",
                    reason: reason + "; \(lost.count) path(s) of the closure that the store held when this run "
                        + "began are gone (a garbage collection while it ran?), \(lost[0]) the first, and the fleet "
                        + "cache was not asked for them: the next run fetches them",
                    exitCode: output.exitCode, isLocal: true)
            }
            // This machine's own failures (a full disk) come first: they are not the server's.
            let damaged = Self.machineError(in: output.tail) == nil ? CacheFetch.damagedNars(in: cache) : []
            if let first = damaged.first {
                // Removed, so that the next run downloads them again (and fails again while the server's are damaged).
                for nar in damaged { _ = try? FileIO.removeFile(nar.file) }
                throw Failure(
                    step: "substitution",
                    reason: reason + "; the fleet cache's NAR of \(first.storePath) is damaged on the server: "
                        + "\(first.reason)\(damaged.count > 1 ? " (and \(damaged.count - 1) more)" : ""), and nothing "
                        + "of it was installed; `fleet gc --verify` on the server finds and repairs it, and the next "
                        + "run tries again",
                    exitCode: output.exitCode, isServerDamage: true)
            }
            throw Failure(
                step: "substitution", reason: reason, exitCode: output.exitCode,
                systemError: Self.machineError(in: output.tail))
        }
        // The toplevel's root holds the whole closure now; the batches' roots only held it until here.
        dropCacheLeftovers(cache: cache)
    }

    /// Substitutes `paths` and their closures (output paths whose closures the local cache holds, or the store
    /// already does) from the local cache, while the rest of the closure still downloads: the same options as
    /// ``realise(_:cache:trustedKey:gcRoot:)``, so the same checks, with GC roots in ``batchRoots(cache:)``
    /// (`root`, then Nix's `-2`, `-3`… for the other paths; each run its own names), so that a garbage collection
    /// cannot take them or their closures before the toplevel is realised.
    func realiseBatch(_ paths: [String], root: String, options: [String], cache: String) async throws(Failure) {
        let roots = Self.batchRoots(cache: cache)
        try FileIO.createDirectoriesOrFail(roots, step: "substitution")
        let output = try await runStreamed(
            "substitution-while-downloading", "nix-store",
            ["--realise"] + paths + ["--add-root", roots + "/" + root] + options,
            timeout: timeouts.buildSeconds)
        guard output.exitCode == 0 else {
            throw Failure(
                step: "substitution",
                reason: "nix-store --realise of \(paths.count) path(s) from the fleet cache exited with status "
                    + "\(output.exitCode)\(Nix.cause(ofFailure: output.tail))",
                exitCode: output.exitCode, systemError: Self.machineError(in: output.tail))
        }
    }

    /// The paths of `toplevel`'s closure that the local cache has no narinfo for and the store does not hold. After
    /// a fetch the local cache has the narinfo of every path the store lacked when the run began, so these are
    /// paths the store lost since (a garbage collection before the walk's valid paths were rooted, or when they
    /// could not be: ``SubstitutionWhileDownloading/hold(_:)``).
    static func pathsLost(below toplevel: String, cache: String) async -> [String] {
        let candidates = unprovidedPaths(below: toplevel, cache: cache)
        guard !candidates.isEmpty, let invalid = try? await CacheFetch.invalidPaths(candidates) else { return [] }
        return candidates.filter(invalid.contains)
    }

    /// `toplevel` and the paths the local cache's narinfo files refer to, less those it has a narinfo for: what
    /// a substitution from it needs the store to hold already. Sorted.
    static func unprovidedPaths(below toplevel: String, cache: String) -> [String] {
        var provided: Set<String> = []
        var needed: Set<String> = [toplevel]
        for name in (try? FileIO.listDirectory(cache)) ?? [] where name.hasSuffix(".narinfo") {
            provided.insert(String(name.dropLast(".narinfo".count)))
            guard let bytes = try? FileIO.readNoFollow(cache + "/" + name, limit: Int(CacheFetch.narinfoLimit)),
                let info = try? NarInfo(parsing: bytes, name: name)
            else { continue }
            needed.formUnion(info.referencedPaths)
        }
        return needed.filter { Nix.hashPart(ofStorePath: $0).map { !provided.contains($0) } ?? false }.sorted()
    }

    /// Where ``realiseBatch(_:root:options:cache:)`` puts its GC roots: beside the local cache. A failed run's
    /// stay, holding what it substituted for the next; all go once a system is in the store and rooted
    /// (``dropCacheLeftovers(cache:)``).
    static func batchRoots(cache: String) -> String { cache + "-roots" }

    /// Empties the local cache and removes the batches' roots, every run's: called once the system is realised
    /// (or built here) and held by its own root, when what failed runs fetched and substituted is of no more use.
    func dropCacheLeftovers(cache: String) {
        CacheFetch.empty(cache)
        try? FileIO.removeTree(Self.batchRoots(cache: cache))
    }

    /// This Nix's options for parallel substitution, asked once per process: a run substitutes twice (its
    /// batches while downloading, then the toplevel), and `nix-store --version` costs tens of milliseconds.
    private static let parallelSubstitution = Mutex<[String]?>(nil)

    /// The options of a substitution from the local cache: it is the only substituter, the fleet key the only
    /// trusted key, signatures are required, and several paths are substituted at once, as this Nix allows.
    func substitutionOptions(cache: String, trustedKey: String) async -> [String] {
        let parallel: [String]
        if let known = Self.parallelSubstitution.withLock({ $0 }) {
            parallel = known
        } else {
            let version = try? await Command.run("nix-store", ["--version"])
            parallel = Substitution.options(
                forVersion: version.flatMap { Substitution.version(fromVersionOutput: $0.standardOutput) })
            Self.parallelSubstitution.withLock { $0 = parallel }
        }
        return [
            "--option", "substituters", "file://" + cache, "--option", "trusted-public-keys", trustedKey, "--option",
            "require-sigs", "true",
        ] + parallel
    }

    /// The profile's current generation, or nil when the profile does not exist yet.
    func currentGeneration() throws(Failure) -> Generation? {
        let link: String
        do {
            guard try FileStatus.of(profile)?.kind == .symbolicLink else { return nil }
            link = try FileIO.readLink(profile)
        } catch {
            throw Failure(step: "profile", reason: "cannot read \(profile): \(error)", exitCode: nil)
        }
        let name = FileIO.split(link).name
        let prefix = FileIO.split(profile).name + "-"
        guard name.hasPrefix(prefix), name.hasSuffix("-link"),
            let number = Int(name.dropFirst(prefix.count).dropLast("-link".count))
        else {
            throw Failure(
                step: "profile", reason: "\(profile) points to \(link), not to a profile generation", exitCode: nil)
        }
        let generationLink = FileIO.split(profile).directory + "/" + name
        do {
            return Generation(number: number, system: try FileIO.readLink(generationLink))
        } catch {
            throw Failure(step: "profile", reason: "cannot read \(generationLink): \(error)", exitCode: nil)
        }
    }

    /// Makes `system` the profile's new current generation.
    func setProfile(to system: String) async throws(Failure) -> Generation {
        try FileIO.createDirectoriesOrFail(FileIO.split(profile).directory, step: "profile")
        let lock = try await waitForActivationLock(step: "profile")
        defer { withExtendedLifetime(lock) {} }
        let output = try await run("profile", "nix-env", ["-p", profile, "--set", system])
        guard output.succeeded else {
            throw Failure(
                step: "profile",
                reason:
                    "nix-env --set exited with status \(output.exitCode)\(Nix.cause(ofFailure: output.standardError))",
                exitCode: output.exitCode, systemError: Self.machineError(in: output.standardError))
        }
        guard let generation = try currentGeneration(), generation.system == system else {
            throw Failure(
                step: "profile", reason: "\(profile) does not point to \(system) after nix-env --set", exitCode: nil)
        }
        return generation
    }

    /// Makes an earlier generation current again, or, with nil (there was none), removes the profile link
    /// and the generation made in this run, so the profile is as it was.
    func restoreProfile(to previous: Generation?, removing made: Generation?) async throws(Failure) {
        let lock = try await waitForActivationLock(step: "profile")
        defer { withExtendedLifetime(lock) {} }
        if let previous {
            let output = try await run(
                "profile", "nix-env", ["-p", profile, "--switch-generation", String(previous.number)])
            guard output.succeeded else {
                throw Failure(
                    step: "profile",
                    reason:
                        "nix-env --switch-generation \(previous.number) exited with status \(output.exitCode)\(Nix.cause(ofFailure: output.standardError))",
                    exitCode: output.exitCode, systemError: Self.machineError(in: output.standardError))
            }
        } else {
            _ = try? FileIO.removeFile(profile)
        }
        if let made, made.number != previous?.number {
            _ = try? FileIO.removeFile(
                FileIO.split(profile).directory + "/" + FileIO.split(profile).name + "-\(made.number)-link")
        }
    }

    /// Runs the system's `bin/switch-to-configuration <operation>`.
    func activate(_ system: String, operation: String) async throws(Failure) {
        let program = system + "/bin/switch-to-configuration"
        guard FileIO.isExecutable(program) else {
            throw Failure(
                step: "activation", reason: "\(program) is missing or not executable: not a NixOS system", exitCode: nil
            )
        }
        // Free, and released at once: switch-to-configuration takes it itself.
        _ = try await waitForActivationLock(step: "activation")
        let output = try await runStreamed(
            "activation", program, [operation], timeout: timeouts.activationSeconds)
        guard output.exitCode == 0 else {
            throw Failure(
                step: "activation",
                reason:
                    "switch-to-configuration \(operation) exited with status \(output.exitCode)\(Nix.cause(ofFailure: output.tail))",
                exitCode: output.exitCode, systemError: Self.machineError(in: output.tail))
        }
    }

    /// Runs the system's `bin/switch-to-configuration dry-activate` (nothing is changed) and returns the lines
    /// of its output that say which units it would stop or restart (``DryActivation``).
    func dryActivate(_ system: String) async throws(Failure) -> DryActivation {
        let program = system + "/bin/switch-to-configuration"
        guard FileIO.isExecutable(program) else {
            throw Failure(
                step: "dry-activate", reason: "\(program) is missing or not executable: not a NixOS system",
                exitCode: nil)
        }
        let kept = Mutex<[String]>([])
        let output = try await runStreamed(
            "dry-activate", program, ["dry-activate"], timeout: timeouts.activationSeconds
        ) { line in
            if DryActivation.isRelevant(line) { kept.withLock { $0.append(line) } }
        }
        guard output.exitCode == 0 else {
            throw Failure(
                step: "dry-activate",
                reason: "switch-to-configuration dry-activate exited with status \(output.exitCode), so which units "
                    + "it would restart is unknown\(Nix.cause(ofFailure: output.tail))",
                exitCode: output.exitCode, systemError: Self.machineError(in: output.tail))
        }
        return DryActivation.parse(kept.withLock { $0 })
    }

    /// Takes ``activationLock``, waiting while another activation holds it, up to the activation timeout; the
    /// lock is released when the returned value is dropped. Waiting past the timeout is a local failure: the
    /// machine is busy with another activation, the generation is not at fault.
    ///
    /// - Returns: nil when the lock's directory (`/run/nixos`) does not exist: no activation has run since boot
    ///   (switch-to-configuration makes it), so none is going on, and a machine that is not NixOS is left
    ///   without a stray `/run/nixos`.
    private func waitForActivationLock(step: String) async throws(Failure) -> FileLock? {
        guard (try? FileStatus.following(FileIO.split(activationLock).directory))??.kind == .directory else {
            return nil
        }
        let deadline = ContinuousClock.now + .seconds(timeouts.activationSeconds)
        var waiting = false
        while true {
            do {
                if let lock = try FileLock.acquire(activationLock, wait: false) { return lock }
            } catch {
                throw Failure(step: step, reason: error.description, exitCode: nil, systemError: error.errno)
            }
            guard ContinuousClock.now < deadline else {
                throw Failure(
                    step: step,
                    reason: "another activation (nixos-rebuild switch, nixos-upgrade.service?) held \(activationLock) "
                        + "for \(timeouts.activationSeconds) s ([timeouts] activation_seconds); nothing was changed",
                    exitCode: nil, systemError: EBUSY)
            }
            if !waiting {
                log.phase("another activation holds \(activationLock) (nixos-rebuild switch?): waiting for it to end")
                waiting = true
            }
            try? await Task.sleep(for: activationLockPoll)
        }
    }

    /// Runs a long step (a build, a substitution, an activation): its output goes to `<outputDirectory>/<step>.log`
    /// as it comes and to the journal line by line, whatever its size; past `timeout` seconds its process group
    /// is killed and the step fails saying so. Returns the exit status and the end of the output; `alsoOnLine`
    /// sees every line as well, for a caller that needs more than the end.
    private func runStreamed(
        _ step: String, _ executable: String, _ arguments: [String], timeout: Int,
        alsoOnLine: (@Sendable (String) -> Void)? = nil
    ) async throws(Failure) -> (exitCode: Int32, tail: String) {
        let commandLine = ([executable] + arguments).joined(separator: " ")
        let file = outputDirectory + "/" + step + ".log"
        _ = try? FileIO.removeFile(file)
        let log = self.log
        // The last lines, in memory: the file may not hold them (a full disk), and the failure's cause is there.
        let tail = Mutex<[String]>([])
        do {
            let status = try await Command.run(
                executable, arguments, appendingOutputTo: file, timeout: .seconds(timeout),
                onLine: { line in
                    log.streamed(line)
                    alsoOnLine?(line)
                    tail.withLock { lines in
                        lines.append(line)
                        if lines.count > 200 { lines.removeFirst(lines.count - 200) }
                    }
                })
            log.output(of: commandLine, exitCode: status, file: file)
            return (status, tail.withLock { $0.joined(separator: "\n") })
        } catch {
            log.output(of: commandLine, exitCode: -1, file: file)
            if case .timedOut = error.code {
                throw Failure(
                    step: step,
                    reason: "timed out after \(timeout) s ([timeouts] in client.toml) and was killed, with every "
                        + "process it started", exitCode: nil)
            }
            throw Failure(step: step, reason: "\(error)", exitCode: nil)
        }
    }

    private func run(_ step: String, _ executable: String, _ arguments: [String]) async throws(Failure) -> CommandOutput
    {
        let commandLine = ([executable] + arguments).joined(separator: " ")
        do {
            let output = try await Command.run(executable, arguments)
            log.output(
                of: commandLine, exitCode: output.exitCode, standardOutput: output.standardOutput,
                standardError: output.standardError)
            return output
        } catch {
            log.output(of: commandLine, exitCode: -1, standardOutput: "", standardError: "\(error)")
            throw Failure(step: step, reason: "\(error)", exitCode: nil)
        }
    }
}

extension FileIO {
    fileprivate static func createDirectoriesOrFail(_ path: String, step: String) throws(NixSystem.Failure) {
        do { try createDirectories(path) } catch {
            throw NixSystem.Failure(step: step, reason: "cannot create \(path): \(error)", exitCode: nil)
        }
    }
}

extension NixSystem {
    /// The machine's system profile, as client.toml names it, with the steps' output in the state directory.
    init(configuration: ClientConfiguration, stateDirectory: StateDirectory, log: RunLog) {
        self.init(
            profile: configuration.profile, log: log, outputDirectory: stateDirectory.path,
            timeouts: configuration.timeouts)
    }

    /// The store path a build left at its GC root `gcRoot` (a link `nix build --out-link` wrote).
    static func builtSystem(at gcRoot: String) throws(Failure) -> String {
        let system: String
        do {
            system = try FileIO.readLink(gcRoot)
        } catch {
            throw Failure(step: "build", reason: "no build result at \(gcRoot): \(error)", exitCode: nil)
        }
        guard system.hasPrefix("/nix/store/") else {
            throw Failure(step: "build", reason: "the build result \(system) is not a store path", exitCode: nil)
        }
        return system
    }
}
