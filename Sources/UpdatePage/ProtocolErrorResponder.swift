import NIOCore
import NIOHTTP1

/// Answers a request the HTTP parser rejected, in place of NIO's `HTTPServerProtocolErrorHandler`, so that
/// oversized headers get a 431 that says so and anything else malformed a 400; the decoder closes the
/// connection right after.
final class ProtocolErrorResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responded = false
    private let headerLimits: NIOHTTPDecoderLimitConfiguration

    init(headerLimits: NIOHTTPDecoderLimitConfiguration) {
        self.headerLimits = headerLimits
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parserError = error as? HTTPParserError, !responded {
            responded = true
            let response: PageResponse
            if parserError == .headerOverflow {
                response = .text(
                    431,
                    """
                    Request headers too large: at most \(headerLimits.maxHeaderListSize) bytes in all, \
                    \(headerLimits.maxHeaderFieldSize) per field and \(headerLimits.maxHeaderFieldCount) fields.
                    """)
            } else {
                response = .text(400, "Malformed HTTP request (\(parserError)).")
            }
            let (head, body) = response.encoded(allocator: context.channel.allocator)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .head = unwrapOutboundIn(data) { responded = true }
        context.write(data, promise: promise)
    }
}
