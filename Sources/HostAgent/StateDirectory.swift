import ClientStateStore
import FleetFiles
import FleetProtocol
import Foundation

/// `<state_dir>`: the client's own files, where they are, and their housekeeping: preparing the directory, the
/// run lock, leftovers of crashed runs, and the extracted generations and secrets kept after an apply.
struct StateDirectory {
    let path: String
    let log: RunLog

    var lockPath: String { path + "/lock" }
    /// Extracted snapshots, `generations/<gen>/`; `current` points at the applied one.
    var generations: String { path + "/generations" }
    /// The local copy of the fleet's binary cache, substituted from.
    var cache: String { path + "/cache" }
    /// The GC root of the last system built or realised.
    var buildResult: String { path + "/build-result" }
    var outbox: String { path + "/outbox" }

    func generation(_ number: UInt64) -> String { "\(generations)/\(number)" }

    /// Creates the state directory and takes its lock.
    ///
    /// - Returns: the lock, held until it is released; or the run's result when the directory cannot be prepared
    ///   (a local failure) or another run holds the lock (locked).
    func lock() -> Step<FileLock> {
        let lock: FileLock?
        do {
            try prepare()
            lock = try FileLock.acquire(lockPath, wait: false)
        } catch {
            let result = RunResult.localFailure("cannot prepare the state directory \(path): \(error)")
            log.phase("\(result.outcome.rawValue): \(result.reason)")
            return .done(result)
        }
        guard let lock else {
            let reason = "another fleet-client run holds \(lockPath); this one stops (the running one will finish)"
            log.phase(reason)
            return .done(RunResult(outcome: .locked, reason: reason))
        }
        return .next(lock)
    }

    private func prepare() throws(ClientError) {
        do {
            try FileIO.createDirectories(path, mode: 0o755)
            try FileIO.ensureDirectory(generations, mode: 0o700)
        } catch {
            throw ClientError("cannot prepare the state directory \(path): \(error)")
        }
    }

    /// Removes temporary files a crashed run left; call it holding the lock.
    func removeLeftovers() {
        ClientState.removeLeftovers(stateDirectory: path)
    }

    /// `current -> generations/<gen>`, replaced atomically.
    func pointCurrent(at generation: UInt64) {
        let link = path + "/current"
        do {
            try FileIO.replaceSymlink(link, pointingTo: "generations/\(generation)")
        } catch {
            log.phase("could not point \(link) at generations/\(generation) (errno \(error.errno))")
        }
    }

    /// Removes extracted generations and secrets beyond the newest `keeping` besides the current one.
    func prune(current: UInt64, keeping count: Int) {
        let numbers = ((try? FileIO.listDirectory(generations)) ?? []).compactMap(UInt64.init).sorted(by: >)
        let keep = Set([current] + numbers.filter { $0 != current }.prefix(count))
        for number in numbers where !keep.contains(number) {
            try? FileIO.removeTree(generation(number))
        }
        SecretStore(stateDirectory: path).prune(keeping: keep)
    }
}
