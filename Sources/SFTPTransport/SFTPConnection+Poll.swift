/// A poll's manifest read and heartbeat write in the same round trips (see `SFTPClient+Poll.swift`).
extension SFTPConnection {
    /// What ``readFile(_:limit:whileWriting:to:)`` did: the read and the write succeed or fail on their own.
    public struct ReadAndWrite: Sendable {
        /// The bytes read, or the error ``SFTPConnection/readFile(_:limit:)`` would have thrown.
        public let read: Result<[UInt8], SSHError>
        /// Nil when the file was written and closed; else the error ``SFTPConnection/writeFile(_:bytes:)`` would
        /// have thrown.
        public let writeError: SSHError?
    }

    /// Reads `path` as ``readFile(_:limit:)`` does while writing `bytes` to `writtenPath` as
    /// ``writeFile(_:bytes:)`` does, with the requests of both in the same round trips: two for a file that fits
    /// one read request, and on a new connection the first of them is shared with the start of SFTP.
    ///
    /// `writtenPath` is created or truncated and written in place, as ``writeFile(_:bytes:)`` does: a reader may
    /// see it empty or half written. A caller that must avoid that writes a temporary name and renames it
    /// (``rename(from:to:)``) once ``ReadAndWrite/writeError`` is nil; fleet-client's heartbeat instead alternates
    /// between two slots, so the other still holds the previous one.
    public func readFile(_ path: String, limit: Int, whileWriting bytes: [UInt8], to writtenPath: String) async
        -> ReadAndWrite
    {
        do throws(SSHError) {
            let done = try await perform { client throws(SSHError) in
                client.readFile(path, limit: limit, whileWriting: bytes, to: writtenPath)
            }
            return ReadAndWrite(read: done.read, writeError: done.writeError)
        } catch {
            return ReadAndWrite(read: .failure(error), writeError: error)
        }
    }
}
