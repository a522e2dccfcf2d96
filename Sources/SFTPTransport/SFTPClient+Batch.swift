internal import CLibSSH
import Glibc

/// Many files over the one SFTP session with many requests in flight: each file is opened, its size and type
/// asked (`FSTAT`), read in chunks and closed, and the requests of different files overlap, so a closure of
/// thousands of small files costs a few round trips per window of files instead of four per file. Each file is
/// read whole or only a range of it (a tail, a head), and no read is sent past the range.
///
/// The requests go past libssh (see `SFTPClient+RawRequests.swift` for why that is safe), because libssh 0.10
/// waits for every open's reply before it sends anything else. Every check of the single-file calls holds for
/// each file: regular files only, the size reported and within the limit (and the expected size when given),
/// no reply longer than asked for, a file that ends early is an error; the limit and expected size are about
/// the whole file, whatever range is read. A reply that does not line up closes the connection. On any failure
/// the handles still open are closed and every reply is read before the first error is thrown, so the session
/// stays usable after a refusal.
extension SFTPClient {
    /// Requests in flight at most (opens, stats, reads and closes together)...
    static let batchWindow = 64
    /// ...of which reads (each up to ``readRequestSize`` bytes of reply: this bounds what is in transit)...
    static let batchReadDepth = 16
    /// ...and files open on the server at once.
    static let batchOpenFiles = 32

    /// One file of a batch, and the bytes of it wanted: from `start` to its end, or at most `maxLength` of them.
    struct BatchFile {
        let path: String
        /// The whole file's limit and expected size, whatever the range: they say which file is acceptable.
        let limit: Int64
        let expectedSize: Int64?
        /// A file shorter than this is refused (it is not the file the caller knows); one exactly this long gives
        /// an empty range.
        let start: Int64
        /// Nil reads to the end. A bound is what makes a head cheap: no read is sent beyond it.
        let maxLength: Int64?

        init(path: String, limit: Int64, expectedSize: Int64? = nil, start: Int64 = 0, maxLength: Int64? = nil) {
            precondition(start >= 0 && (maxLength ?? 0) >= 0, "a range of a file starts and ends within it")
            self.path = path
            self.limit = limit
            self.expectedSize = expectedSize
            self.start = start
            self.maxLength = maxLength
        }
    }

    /// Where a batch's bytes go, file by file. The sink sees only the range read, its offsets counted from the
    /// range's start, so a tail lands at the start of its local file.
    protocol BatchSink {
        /// The file's size is known and checked: prepare for the range's `size` bytes.
        mutating func begin(_ index: Int, size: Int64) throws(SSHError)
        /// `offset` is relative to the range's start.
        mutating func write(_ index: Int, at offset: Int64, _ bytes: [UInt8]) throws(SSHError)
        /// Every byte of the range arrived.
        mutating func finish(_ index: Int) throws(SSHError)
    }

    private enum Request {
        case open(Int)
        case fstat(Int)
        case read(Int, offset: Int64, length: UInt32)
        case close(Int)

        var file: Int {
            switch self {
            case .open(let index), .fstat(let index), .read(let index, _, _), .close(let index): index
            }
        }
    }

    private struct FileProgress {
        /// The handle as an SSH string, once the open succeeded and until the close is sent.
        var handle: [UInt8]?
        /// The whole file's size, for messages; the range read is `start..<end` (remote offsets).
        var size: Int64 = 0
        var start: Int64 = 0
        var end: Int64 = 0
        var nextOffset: Int64 = 0
        /// Bytes of the range received: the file is complete when this is `end - start`.
        var received: Int64 = 0
        var readsInFlight = 0
        var statInFlight = false
        var reading = false
        var retries: [(offset: Int64, length: UInt32)] = []
        var closing = false

        var isComplete: Bool { reading && received == end - start }
    }

    /// Transfers `files` into `sink` with many requests in flight; throws the first failure once every
    /// outstanding reply has been read and every handle closed.
    ///
    /// - Returns: each whole file's size (the sink saw only its range's).
    @discardableResult
    func transferBatch<Sink: BatchSink>(_ files: [BatchFile], operation: String, into sink: inout Sink)
        throws(SSHError) -> [Int64]
    {
        let sftp = try requireSFTP(operation, files.first?.path ?? "")
        let channel = sftp.pointee.channel
        var progress = [FileProgress](repeating: FileProgress(), count: files.count)
        var outstanding: [UInt32: Request] = [:]
        var readsInFlight = 0
        var openFiles = 0
        var nextFile = 0
        var reading: [Int] = []  // files with reads still to send, oldest first
        var outgoing: [UInt8] = []
        var firstError: SSHError?

        func send(_ type: PacketType, _ body: [UInt8], _ request: Request) {
            let id = nextRawRequestID()
            var payload: [UInt8] = [type.rawValue]
            payload.appendBigEndian(id)
            payload += body
            outgoing.appendBigEndian(UInt32(payload.count))
            outgoing += payload
            outstanding[id] = request
            if case .read = request { readsInFlight += 1 }
        }
        func sendClose(_ index: Int) {
            guard let handle = progress[index].handle, !progress[index].closing else { return }
            progress[index].closing = true
            send(.close, handle, .close(index))
        }
        func fail(_ error: SSHError) {
            if firstError == nil { firstError = error }
        }
        /// Closes a file that has nothing in flight any more, once it is complete or the batch is failing.
        func closeIfIdle(_ index: Int) {
            let file = progress[index]
            guard file.readsInFlight == 0, !file.statInFlight else { return }
            if firstError != nil || file.isComplete { sendClose(index) }
        }
        func nextRange(_ index: Int) -> (offset: Int64, length: UInt32)? {
            if let retry = progress[index].retries.popLast() { return retry }
            let file = progress[index]
            guard file.nextOffset < file.end else { return nil }
            let length = UInt32(min(Int64(readRequestSize), file.end - file.nextOffset))
            progress[index].nextOffset += Int64(length)
            return (file.nextOffset, length)
        }

        while true {
            if firstError == nil {
                while outstanding.count < Self.batchWindow, readsInFlight < Self.batchReadDepth, !reading.isEmpty {
                    let index = reading[0]
                    guard let range = nextRange(index), let handle = progress[index].handle else {
                        reading.removeFirst()
                        continue
                    }
                    var body = handle
                    body.appendBigEndian(UInt64(range.offset))
                    body.appendBigEndian(range.length)
                    progress[index].readsInFlight += 1
                    send(.read, body, .read(index, offset: range.offset, length: range.length))
                }
                while outstanding.count < Self.batchWindow, openFiles < Self.batchOpenFiles, nextFile < files.count {
                    var body: [UInt8] = []
                    body.appendString(Array(files[nextFile].path.utf8))
                    body.appendBigEndian(Self.openRead)
                    body.appendBigEndian(UInt32(0))  // no attributes
                    send(.open, body, .open(nextFile))
                    openFiles += 1
                    nextFile += 1
                }
            }
            if !outgoing.isEmpty {
                let written = outgoing.withUnsafeBytes { ssh_channel_write(channel, $0.baseAddress, UInt32($0.count)) }
                guard written == outgoing.count else { throw transportFailure(operation, path: files[0].path) }
                outgoing.removeAll(keepingCapacity: true)
            }
            guard !outstanding.isEmpty else { break }

            var reader = RawReader(try readPacket(channel, operation: operation, path: files[0].path))
            guard let type = reader.byte(), let id = reader.uint32(), let request = outstanding.removeValue(forKey: id)
            else {
                close()  // the channel no longer lines up with libssh's idea of it
                throw error(
                    .connectionLost, operation, path: files[0].path, detail: "the server sent an unexpected reply")
            }
            watchdog.progress()
            let reply = RawReply(type: type, reader: reader)
            let index = request.file
            let file = files[index]
            do throws(SSHError) {
                switch request {
                case .open:
                    var body = reply.reader
                    guard reply.type == PacketType.handle.rawValue, let handle = body.data() else {
                        openFiles -= 1
                        throw refusal(reply, operation, path: file.path)
                    }
                    var field: [UInt8] = []
                    field.appendString(handle)
                    progress[index].handle = field
                    // OpenSSH's handles are 4 bytes; the protocol allows 256.
                    guard handle.count <= 256 else {
                        sendClose(index)
                        throw error(
                            .sftpFailure, operation, path: file.path,
                            detail: "the server sent a handle of \(handle.count) bytes")
                    }
                    if firstError != nil {
                        sendClose(index)
                    } else {
                        progress[index].statInFlight = true
                        send(.fstat, field, .fstat(index))
                    }
                case .fstat:
                    progress[index].statInFlight = false
                    defer { closeIfIdle(index) }
                    guard firstError == nil else { break }
                    let size = try checkedSize(reply, file, operation)
                    guard file.start <= size else {
                        throw error(
                            .sftpFailure, operation, path: file.path,
                            detail: "it is \(size) bytes, shorter than the offset \(file.start)")
                    }
                    let end = file.start + min(size - file.start, file.maxLength ?? size)
                    progress[index].size = size
                    progress[index].start = file.start
                    progress[index].end = end
                    progress[index].nextOffset = file.start
                    try sink.begin(index, size: end - file.start)
                    progress[index].reading = true
                    if end == file.start {
                        try sink.finish(index)
                    } else {
                        reading.append(index)
                    }
                case .read(_, let offset, let length):
                    readsInFlight -= 1
                    progress[index].readsInFlight -= 1
                    defer { closeIfIdle(index) }
                    guard firstError == nil else { break }
                    var body = reply.reader
                    guard reply.type == PacketType.data.rawValue, let bytes = body.data() else {
                        var status = reply.reader
                        if reply.type == PacketType.status.rawValue, status.uint32() == UInt32(SSH_FX_EOF) {
                            throw error(
                                .sftpFailure, operation, path: file.path,
                                detail:
                                    "the file ended at byte \(offset), before its size of \(progress[index].size) bytes"
                            )
                        }
                        throw refusal(reply, operation, path: file.path)
                    }
                    guard bytes.count <= Int(length) else {
                        throw error(
                            .sftpFailure, operation, path: file.path,
                            detail: "the server sent \(bytes.count) bytes where at most \(length) were asked for")
                    }
                    guard !bytes.isEmpty else {
                        throw error(
                            .sftpFailure, operation, path: file.path,
                            detail: "the file ended at byte \(offset), before its size of \(progress[index].size) bytes"
                        )
                    }
                    try sink.write(index, at: offset - progress[index].start, bytes)
                    if bytes.count < Int(length) {
                        // A short reply: ask again for the rest, as the single-file download does.
                        progress[index].retries.append((offset + Int64(bytes.count), length - UInt32(bytes.count)))
                        if !reading.contains(index) { reading.append(index) }
                    }
                    progress[index].received += Int64(bytes.count)
                    if progress[index].isComplete { try sink.finish(index) }
                case .close:
                    // The close of a read-only handle has nothing to report that matters here.
                    progress[index].handle = nil
                    openFiles -= 1
                }
            } catch {
                fail(error)
                // Every file with nothing in flight is closed now; the others when their replies arrive.
                for other in progress.indices where progress[other].handle != nil { closeIfIdle(other) }
            }
        }
        if let firstError { throw firstError }
        return progress.map(\.size)
    }

    /// The size an `ATTRS` reply gives, once the file is a regular file within its limit (and of the expected
    /// size when one was given).
    private func checkedSize(_ reply: RawReply, _ file: BatchFile, _ operation: String) throws(SSHError) -> Int64 {
        guard reply.type == PacketType.attributes.rawValue else { throw refusal(reply, operation, path: file.path) }
        var attributes = reply.reader
        guard let (kind, size) = Self.kindAndSize(&attributes) else {
            throw error(
                .sftpFailure, operation, path: file.path, detail: "the server sent attributes it cannot be read from")
        }
        guard let kind else {
            throw error(.sftpFailure, operation, path: file.path, detail: "the server did not say the file's type")
        }
        guard kind == 0o100_000 else {
            throw error(.sftpFailure, operation, path: file.path, detail: "it is not a regular file")
        }
        guard let size else {
            throw error(.sftpFailure, operation, path: file.path, detail: "the server did not report its size")
        }
        if let expected = file.expectedSize, size != UInt64(expected) {
            throw error(
                .limitExceeded, operation, path: file.path, detail: "it is \(size) bytes, but \(expected) were expected"
            )
        }
        guard size <= UInt64(file.limit) else {
            throw error(
                .limitExceeded, operation, path: file.path,
                detail: "it is \(size) bytes, over the limit of \(file.limit)")
        }
        return Int64(size)
    }
}

/// Files (or their ranges) into memory.
struct MemoryBatchSink: SFTPClient.BatchSink {
    var contents: [[UInt8]]

    init(count: Int) {
        contents = [[UInt8]](repeating: [], count: count)
    }

    mutating func begin(_ index: Int, size: Int64) throws(SSHError) {
        contents[index] = [UInt8](repeating: 0, count: Int(size))
    }

    mutating func write(_ index: Int, at offset: Int64, _ bytes: [UInt8]) throws(SSHError) {
        contents[index].replaceSubrange(Int(offset)..<Int(offset) + bytes.count, with: bytes)
    }

    mutating func finish(_ index: Int) throws(SSHError) {}
}

/// Files (or their ranges) into new local files: each created with `O_EXCL | O_NOFOLLOW` (mode 0600) when its
/// size is known, written at its offsets, closed when complete. Nothing is flushed per file: ``syncAll()`` makes
/// the batch durable at once, and ``removeAll()`` takes every file it created away again.
struct LocalFilesBatchSink: SFTPClient.BatchSink {
    let client: SFTPClient
    let localPaths: [String]
    private var descriptors: [Int32]
    private(set) var created: [String] = []
    private(set) var bytes: Int64 = 0

    init(client: SFTPClient, localPaths: [String]) {
        self.client = client
        self.localPaths = localPaths
        descriptors = [Int32](repeating: -1, count: localPaths.count)
    }

    mutating func begin(_ index: Int, size: Int64) throws(SSHError) {
        let path = localPaths[index]
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw client.localError("create", path) }
        descriptors[index] = descriptor
        created.append(path)
    }

    mutating func write(_ index: Int, at offset: Int64, _ chunk: [UInt8]) throws(SSHError) {
        let descriptor = descriptors[index]
        var written = 0
        while written < chunk.count {
            let count = chunk.withUnsafeBytes {
                pwrite(descriptor, $0.baseAddress! + written, chunk.count - written, off_t(offset) + off_t(written))
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw client.localError("write", localPaths[index])
            }
            written += count
        }
        bytes += Int64(chunk.count)
    }

    mutating func finish(_ index: Int) throws(SSHError) {
        let descriptor = descriptors[index]
        descriptors[index] = -1
        guard Glibc.close(descriptor) == 0 else { throw client.localError("close", localPaths[index]) }
    }

    /// One `syncfs(2)` per directory written into (in practice one): every file's data reaches the disk with one
    /// flush instead of one `fsync` per file.
    func syncAll() throws(SSHError) {
        var directories: [String] = []
        for path in created {
            let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
            if !directories.contains(directory) { directories.append(directory) }
        }
        for directory in directories {
            let descriptor = Glibc.open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard descriptor >= 0 else { throw client.localError("open the directory of", directory) }
            defer { Glibc.close(descriptor) }
            guard syncfs(descriptor) == 0 else { throw client.localError("flush", directory) }
        }
    }

    /// Closes what is open and removes every file this batch created.
    mutating func removeAll() {
        for index in descriptors.indices where descriptors[index] >= 0 {
            Glibc.close(descriptors[index])
            descriptors[index] = -1
        }
        for path in created { unlink(path) }
        created = []
    }
}

extension SFTPClient {
    func readFiles(_ paths: [String], limit: Int) throws(SSHError) -> [String: [UInt8]] {
        try readBatch(paths, operation: "read") { BatchFile(path: $0, limit: Int64(limit)) }.mapValues(\.bytes)
    }

    func readFileHeads(_ paths: [String], length: Int, limit: Int64) throws(SSHError) -> [String: SFTPConnection
        .FileHead]
    {
        precondition(length >= 0, "a head is not of negative length")
        return try readBatch(paths, operation: "read the start of") {
            BatchFile(path: $0, limit: limit, maxLength: Int64(length))
        }
    }

    /// Each distinct path of `paths` into memory, as `file` describes it, with the whole file's size.
    private func readBatch(
        _ paths: [String], operation: String, file: (String) -> BatchFile
    ) throws(SSHError) -> [String: SFTPConnection.FileHead] {
        var unique: [String] = []
        var seen: Set<String> = []
        for path in paths where seen.insert(path).inserted { unique.append(path) }
        guard !unique.isEmpty else { return [:] }
        var sink = MemoryBatchSink(count: unique.count)
        let sizes = try transferBatch(unique.map(file), operation: operation, into: &sink)
        var result: [String: SFTPConnection.FileHead] = [:]
        for (index, path) in unique.enumerated() {
            result[path] = SFTPConnection.FileHead(bytes: sink.contents[index], size: sizes[index])
        }
        return result
    }

    func downloadFiles(_ items: [SFTPConnection.Download]) throws(SSHError) -> Int64 {
        guard !items.isEmpty else { return 0 }
        var sink = LocalFilesBatchSink(client: self, localPaths: items.map(\.localPath))
        do {
            try transferBatch(
                items.map {
                    BatchFile(path: $0.remotePath, limit: $0.limit, expectedSize: $0.expectedSize, start: $0.offset)
                },
                operation: "download", into: &sink)
            try sink.syncAll()
        } catch {
            sink.removeAll()
            throw error
        }
        return sink.bytes
    }
}
