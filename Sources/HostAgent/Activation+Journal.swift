import ClientStateStore
import FleetFiles
import Foundation

extension Activation {
    /// The journal of an activation waiting for confirmation: `<state_dir>/pending.json`.
    ///
    /// Written (and fsynced) before the new system is activated and removed once it is confirmed or rolled back,
    /// so that a run killed inside the window leaves enough behind for the next run to finish the job.
    struct Journal: Codable, Equatable {
        var generation: UInt64
        var contentDigest: String
        var sourceCommit: String
        var operation: String
        /// The system activated and waiting for confirmation.
        var system: String
        /// The profile generation made for it (nil for `test`, which makes none), and the one to go back to (nil
        /// when there was none, or none was made).
        var madeProfileGeneration: Int?
        var previousProfileGeneration: Int?
        /// The system a rollback activates again.
        var previousSystem: String?
        /// The generation applied before (its secrets are restored on rollback).
        var previousGeneration: UInt64?
        /// Seconds since 1970: the end of the confirmation window.
        var deadline: Double
        /// The verified manifest's snapshot hash, so that a resuming run can record the generation as seen (nil in
        /// journals written before it was kept).
        var snapshotSHA256: String?
        var startedAt: String
        /// The digest of the host-local overlays built on top (nil: none, or a journal from before overlays).
        var overlays: String?
        /// The run that wrote it, for whoever reads the journal by hand.
        var pid: Int32

        static let fileName = "pending.json"

        static func load(stateDirectory: String) throws(ClientError) -> Journal? {
            let path = stateDirectory + "/" + fileName
            do {
                guard try FileStatus.of(path) != nil else { return nil }
                return try JSONDecoder().decode(
                    Journal.self, from: Data(try FileIO.readNoFollow(path, limit: 1 << 20)))
            } catch {
                throw ClientError(
                    "cannot read the activation journal \(path): \(error). An activation was interrupted; check the "
                        + "profile (\(FileIO.split(path).directory)) by hand, then remove the journal")
            }
        }

        func save(stateDirectory: String) throws(ClientError) {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            do {
                try FileIO.writeAtomically(
                    Array(try encoder.encode(self)) + [0x0a], to: stateDirectory + "/" + Self.fileName, mode: 0o600)
            } catch {
                throw ClientError(
                    "cannot write the activation journal in \(stateDirectory): \(error)",
                    systemError: (error as? FileSystemError)?.errno)
            }
        }

        static func remove(stateDirectory: String) {
            _ = try? FileIO.removeFile(stateDirectory + "/" + fileName)
            try? FileIO.syncDirectory(of: stateDirectory + "/" + fileName)
        }
    }
}
