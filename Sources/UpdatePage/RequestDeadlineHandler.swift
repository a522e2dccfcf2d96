import NIOCore
import NIOHTTP1

/// Gives each connection `timeout` to deliver its whole request, then answers 408 and closes it: an idle
/// connection, or one that dribbles its headers a byte at a time (slowloris), cannot hold a slot for long.
/// Once the request is in, the same time again bounds the answer.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var requestComplete = false
    private var responded = false

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        schedule(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = unwrapInboundIn(data), !requestComplete {
            requestComplete = true
            schedule(context: context)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .head = unwrapOutboundIn(data) { responded = true }
        context.write(data, promise: promise)
    }

    private func schedule(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            self.expire(context: context)
        }
    }

    private func expire(context: ChannelHandlerContext) {
        timer = nil
        guard context.channel.isActive else { return }
        if !requestComplete && !responded {
            responded = true
            let seconds = timeout.nanoseconds / 1_000_000_000
            let response = PageResponse.text(408, "Request timeout: the whole request must arrive within \(seconds) s.")
            let (head, body) = response.encoded(allocator: context.channel.allocator)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        } else {
            context.close(promise: nil)
        }
    }
}
