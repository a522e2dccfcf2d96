import NIOCore
import Synchronization

/// Caps the connections open at once. Every connection is short (one request, a deadline), but many idle
/// ones together could still use up descriptors; past the cap a connection gets a 503 and is closed at once.
final class ConnectionLimiter: Sendable {
    let limit: Int
    private let open = Mutex(0)

    init(limit: Int) {
        self.limit = max(limit, 1)
    }

    /// Counts a new connection in; false when the cap is reached (and it is not counted).
    func admit() -> Bool {
        open.withLock { open in
            guard open < limit else { return false }
            open += 1
            return true
        }
    }

    func release() {
        open.withLock { $0 -= 1 }
    }

    /// The only handler of a connection past the cap: writes a 503 and closes.
    final class RefusalHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        private let limit: Int
        private var refused = false

        init(limit: Int) {
            self.limit = limit
        }

        func handlerAdded(context: ChannelHandlerContext) {
            if context.channel.isActive { refuse(context: context) }
        }

        func channelActive(context: ChannelHandlerContext) {
            refuse(context: context)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

        private func refuse(context: ChannelHandlerContext) {
            guard !refused else { return }
            refused = true
            let body = "Too many connections to the page (at most \(limit) at once); try again shortly.\n"
            let text =
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\nRetry-After: 5\r\n\r\n" + body
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: text))).assumeIsolated()
                .whenComplete { _ in context.close(promise: nil) }
        }
    }
}
