/// A poll's reading and writing in the same round trips: the manifest is read while the heartbeat is written.
///
/// Both opens go out together (on a new connection, together with the SFTP start: see `SFTPClient+Start.swift`),
/// then the manifest's `FSTAT`, `READ` and `CLOSE` together with the heartbeat's `WRITE`s and `CLOSE`. Two round
/// trips for what takes four on their own. The file is written in place (created or truncated): a caller that
/// must never show half a file writes a temporary name and renames it once the write and close succeeded.
extension SFTPClient {
    /// What ``readFile(_:limit:whileWriting:to:)`` did: each half fails or succeeds on its own.
    struct ReadAndWrite: Sendable {
        /// The file read, or the error ``readFile(_:limit:)`` would have thrown.
        let read: Result<[UInt8], SSHError>
        /// Nil when every write and the close succeeded; else the error ``writeFile(_:bytes:)`` would have thrown.
        let writeError: SSHError?
    }

    func readFile(_ path: String, limit: Int, whileWriting bytes: [UInt8], to writtenPath: String) -> ReadAndWrite {
        // A file that needs several reads is read on its own; its opens alone would not save a round trip.
        guard limit < Int(readRequestSize) else {
            let read = Result { () throws(SSHError) in try readFile(path, limit: limit) }
            let write = Result { () throws(SSHError) in try writeFile(writtenPath, bytes: bytes) }
            return ReadAndWrite(read: read, writeError: write.failure)
        }
        let opened: [RawReply]
        do throws(SSHError) {
            opened = try exchange(
                [(.open, Self.openForReading(path)), (.open, Self.openForWriting(writtenPath))], operation: "read",
                path: path)
        } catch {
            return ReadAndWrite(read: .failure(error), writeError: error)
        }
        let readHandle = Result { () throws(SSHError) in try handle(from: opened[0], "read", path: path) }
        let writeHandle = Result { () throws(SSHError) in try handle(from: opened[1], "write", path: writtenPath) }

        var requests: [(SFTPClient.PacketType, [UInt8])] = []
        if case .success(let handle) = readHandle { requests += Self.smallReadRequests(handle, limit: limit) }
        let firstWrite = requests.count
        if case .success(let handle) = writeHandle { requests += Self.writeRequests(handle, bytes) }
        var read = readHandle.map { _ in [UInt8]() }
        var writeError = writeHandle.failure
        if !requests.isEmpty {
            let replies: [RawReply]
            do throws(SSHError) {
                replies = try exchange(requests, operation: "read", path: path)
            } catch {
                return ReadAndWrite(read: .failure(error), writeError: error)
            }
            if writeError == nil {
                do throws(SSHError) {
                    for reply in replies[firstWrite...] { try expectOK(reply, "write", path: writtenPath) }
                } catch {
                    writeError = error
                }
            }
            if case .success = read {
                do throws(SSHError) {
                    // Inconclusive (a short reply, no file type): read the long way, as readFile does.
                    let small = try smallReadResult(replies[..<firstWrite], path, limit: limit)
                    if let small {
                        read = .success(small)
                    } else {
                        read = .success(try readFileWithLibSSH(path, limit: limit))
                    }
                } catch {
                    read = .failure(error)
                }
            }
        }
        return ReadAndWrite(read: read, writeError: writeError)
    }
}

extension Result {
    /// The error, or nil on success.
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
