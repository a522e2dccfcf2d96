import NIOCore
import NIOHTTP1
import NIOPosix

/// The page's HTTP server (SwiftNIO's HTTP/1 parser; routes, policy and limits here), on a listening
/// socket from ``ListeningSocket``: systemd's, or one it bound on 127.0.0.1.
///
/// Each connection carries one request: it must arrive whole within the request timeout, within the header
/// and body limits, and while fewer than the maximum connections are open; the answer closes the
/// connection. Every refusal is an HTTP status with a sentence saying why.
public final class UpdatePageServer: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    /// The port the page is on (from the socket: systemd's, or the kernel's choice for port 0).
    public let port: Int
    /// Starts runs and shows the latest.
    public let runs: RunStarter
    private let listener: NIOAsyncChannel<Connection, Never>
    private let responder: PageResponder
    private let maximumBodyBytes: Int

    private init(
        port: Int, runs: RunStarter, listener: NIOAsyncChannel<Connection, Never>, responder: PageResponder,
        maximumBodyBytes: Int
    ) {
        self.port = port
        self.runs = runs
        self.listener = listener
        self.responder = responder
        self.maximumBodyBytes = maximumBodyBytes
    }

    /// Starts accepting on `socket`, which the server owns from now on (it closes it when it stops, and on
    /// failure here). Call ``run()`` to serve.
    public static func start(
        _ configuration: UpdatePageConfiguration, socket: ListeningSocket
    ) async throws(UpdatePageError) -> UpdatePageServer {
        let limiter = ConnectionLimiter(limit: configuration.maximumConnections)
        let timeout = TimeAmount.nanoseconds(Int64(configuration.requestTimeout / .nanoseconds(1)))
        let limits = configuration.headerLimits
        let listener: NIOAsyncChannel<Connection, Never>
        do {
            listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(socket.descriptor) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        if limiter.admit() {
                            channel.closeFuture.whenComplete { _ in limiter.release() }
                        } else {
                            try pipeline.addHandler(ConnectionLimiter.RefusalHandler(limit: limiter.limit))
                        }
                        try pipeline.configureHTTPServerPipeline(
                            withPipeliningAssistance: false, withErrorHandling: false,
                            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
                        try pipeline.addHandler(ProtocolErrorResponder(headerLimits: limits))
                        try pipeline.addHandler(RequestDeadlineHandler(timeout: timeout))
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            socket.close()
            throw UpdatePageError("cannot serve on 127.0.0.1:\(socket.port): \(error)")
        }
        let runs = RunStarter(
            startCommand: configuration.startCommand, stateDirectory: configuration.stateDirectory,
            minimumInterval: configuration.minimumRunInterval, startTimeout: configuration.startTimeout)
        let responder = PageResponder(
            policy: RequestPolicy(port: socket.port), runs: runs, host: configuration.host,
            stateDirectory: configuration.stateDirectory)
        return UpdatePageServer(
            port: socket.port, runs: runs, listener: listener, responder: responder,
            maximumBodyBytes: configuration.maximumBodyBytes)
    }

    /// Serves until ``stop()`` (or the listening socket fails), then waits for open connections to end.
    public func run() async {
        await withDiscardingTaskGroup { group in
            do {
                try await listener.executeThenClose { connections in
                    for try await connection in connections {
                        group.addTask { await self.serve(connection) }
                    }
                }
            } catch {
                // The listening socket was closed or failed: nothing more to accept.
            }
        }
    }

    /// Stops accepting; ``run()`` returns once the open connections end (each within the request timeout).
    public func stop() {
        listener.channel.close(promise: nil)
    }

    /// One connection: one request, one answer, closed.
    private func serve(_ connection: Connection) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var request: HTTPRequestHead?
                var bodyBytes = 0
                var refusedBody = false
                for try await part in inbound {
                    switch part {
                    case .head(let head):
                        request = head
                        let declared = head.headers["content-length"].compactMap { Int($0) }.max() ?? 0
                        if declared > maximumBodyBytes {
                            refusedBody = true
                            try await write(tooLarge(), method: head.method, to: outbound)
                        }
                    case .body(let chunk):
                        bodyBytes += chunk.readableBytes
                        if refusedBody {
                            // Read on a little so that the 413 is not lost to a reset, then give up.
                            if bodyBytes > 64 * maximumBodyBytes { return }
                        } else if bodyBytes > maximumBodyBytes {
                            refusedBody = true
                            try await write(tooLarge(), method: request?.method ?? .POST, to: outbound)
                        }
                    case .end:
                        guard let head = request, !refusedBody else { return }
                        let response = await responder.respond(
                            method: head.method.rawValue, target: head.uri,
                            headers: head.headers.map { (name: $0.name, value: $0.value) })
                        try await write(response, method: head.method, to: outbound)
                        return
                    }
                }
            }
        } catch {
            // The client went away, or a handler refused the request and closed the connection.
        }
    }

    private func tooLarge() -> PageResponse {
        .text(413, "Request body too large: the page takes at most \(maximumBodyBytes) bytes (a press needs none).")
    }

    private func write(
        _ response: PageResponse, method: HTTPMethod, to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    ) async throws {
        let (head, body) = response.encoded(allocator: ByteBufferAllocator())
        try await outbound.write(.head(head))
        if method != .HEAD { try await outbound.write(.body(.byteBuffer(body))) }
        try await outbound.write(.end(nil))
    }
}
