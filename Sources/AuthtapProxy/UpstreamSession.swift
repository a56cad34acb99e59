import AuthtapModel
import NIOCore
import NIOHTTP1
import NIOHTTP2

extension UpstreamHandler {
    /// The stream's id on its HTTP/2 connection.
    var streamID: Int? {
        guard session != nil, let channel else { return nil }
        return (try? channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID)).map { Int($0) }
    }

    /// The server chose h2: this connection's HTTP/1 handlers make way for NIOHTTP2's, and the connection becomes
    /// an `UpstreamSession` whose streams each carry one exchange. Done inside the handshake event, so the first
    /// bytes after it (the server's SETTINGS) already reach the HTTP/2 handler.
    func becomeHTTP2(context: ChannelHandlerContext) {
        let sync = context.pipeline.syncOperations
        let facts = tlsFacts()
        do {
            let encoder = try sync.handler(type: HTTPRequestEncoder.self)
            let decoder = try sync.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self)
            // authtap asks for no pushed responses: an exchange is what the client asked for.
            var settings = NIOHTTP2Handler.ConnectionConfiguration()
            settings.initialSettings = nioDefaultSettings + [HTTP2Setting(parameter: .enablePush, value: 0)]
            // NIOHTTP2 ends a connection whose peer resets over 200 streams in 30 s (the rapid-reset defence of a
            // server). A server answers each request it answered early with RST_STREAM NO_ERROR (RFC 9113 §8.1;
            // nginx does for every POST it answers without reading the body), so a busy upstream connection sends
            // thousands, and authtap is that connection's client.
            var streams = NIOHTTP2Handler.StreamConfiguration()
            streams.streamResetFrameRateLimit.maximumCount = 1 << 30
            let http2 = NIOHTTP2Handler(
                mode: .client, eventLoop: context.eventLoop, connectionConfiguration: settings,
                streamConfiguration: streams,
                inboundStreamInitializer: { channel in
                    // Servers do not open streams of their own here (push is off): refuse any.
                    channel.close()
                })
            try sync.addHandler(http2, position: .before(encoder))
            let watch = HTTP2GoAwayWatch()
            try sync.addHandler(watch, position: .before(http2))
            let session = UpstreamSession(
                key: key, isTLS: isTLS, insecure: insecure, multiplexer: try http2.syncMultiplexer(), facts: facts,
                connectedAt: connectedAt, handshakeAt: handshakeAt, watch: watch)
            try sync.addHandler(session, position: .after(http2))
            if let timer = try? sync.handler(type: UpstreamTimeoutHandler.self) {
                sync.removeHandler(timer, promise: nil)
            }
            sync.removeHandler(encoder, promise: nil)
            sync.removeHandler(decoder, promise: nil)
            upgraded = session
        } catch {
            context.close(promise: nil)
            return
        }
        sync.removeHandler(context: context, promise: nil)
    }
}

/// An upstream HTTP/2 connection, after NIOHTTP2's handler: opens a stream per exchange, keeps the connection's
/// TLS facts for its streams' records, and notes a GOAWAY, after which it takes no new stream.
final class UpstreamSession: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame

    let key: String
    let isTLS: Bool
    let insecure: Bool
    let facts: TLSFacts?
    let connectedAt: NIODeadline?
    let handshakeAt: NIODeadline?
    /// Streams opened so far: the first reports the connection's connect and handshake times.
    var streamsOpened = 0
    private(set) var goAway: FailureClassifier.GoAway?
    private(set) var lastError: (any Error)?
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    private let watch: HTTP2GoAwayWatch
    private var context: ChannelHandlerContext?
    /// The pool this connection is shared from.
    weak var pool: UpstreamPool?

    init(
        key: String, isTLS: Bool, insecure: Bool, multiplexer: NIOHTTP2Handler.StreamMultiplexer, facts: TLSFacts?,
        connectedAt: NIODeadline?, handshakeAt: NIODeadline?, watch: HTTP2GoAwayWatch
    ) {
        self.watch = watch
        self.key = key
        self.isTLS = isTLS
        self.insecure = insecure
        self.multiplexer = multiplexer
        self.facts = facts
        self.connectedAt = connectedAt
        self.handshakeAt = handshakeAt
    }

    var isUsable: Bool { context?.channel.isActive == true && goAway == nil && lastError == nil }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .goAway(let lastStreamID, let code, _) = unwrapInboundIn(data).payload {
            goAway = FailureClassifier.GoAway(code: code, lastStreamID: Int(lastStreamID))
            pool?.remove(self)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A stream error ends only its stream, which its own handler reports; the connection carries on. A connection
        // error was answered with GOAWAY (see HTTP2GoAwayWatch).
        let http2 = error is any NIOHTTP2Error || error is NIOHTTP2Errors.StreamError
        if http2 && !watch.goAwaySent { return }
        if lastError == nil { lastError = error }
        pool?.remove(self)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool?.remove(self)
        context.fireChannelInactive()
    }

    func close() { context?.close(promise: nil) }

    /// A new stream with NIOHTTP2's HTTP/1 client codec and an `UpstreamHandler` for one exchange.
    func openStream(on loop: any EventLoop) -> EventLoopFuture<UpstreamHandler> {
        guard isUsable else { return loop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
        let handler = UpstreamHandler(stream: self)
        let bound = NIOLoopBound(handler, eventLoop: loop)
        let scheme: HTTP2FramePayloadToHTTP1ClientCodec.HTTPProtocol = isTLS ? .https : .http
        return multiplexer.createStreamChannel { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers([
                    HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: scheme), bound.value,
                ])
            }
        }.assumeIsolated().map { _ in handler }.nonisolated()
    }
}
