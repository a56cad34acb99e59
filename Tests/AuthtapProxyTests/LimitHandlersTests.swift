import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOTLS
import Testing

@testable import AuthtapProxy

/// The thin timing handlers on an embedded loop with virtual time: they close at the machine's deadlines and
/// tell the handlers after them why.
@Suite struct LimitHandlersTests {
    final class ErrorCatcher: ChannelInboundHandler {
        typealias InboundIn = Any
        var errors: [any Error] = []
        func errorCaught(context: ChannelHandlerContext, error: any Error) { errors.append(error) }
    }

    static let timeouts = ConnectionDeadlines.Timeouts(head: 30, idle: 60, tunnelIdle: 300, handshake: 10)
    static let get = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")

    func active(_ handlers: [any ChannelHandler]) throws -> (EmbeddedEventLoop, EmbeddedChannel, ErrorCatcher) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let catcher = ErrorCatcher()
        try channel.pipeline.syncOperations.addHandlers(handlers + [catcher])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        return (loop, channel, catcher)
    }

    @Test func aClientThatNeverFinishesItsHeadIsClosed() throws {
        let timer = ClientTimeoutHandler(timeouts: Self.timeouts)
        let (loop, channel, catcher) = try active([timer])
        try channel.writeInbound(ByteBuffer(string: "GET http://example.test/ HTTP/1.1\r\nHost: exa"))
        loop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
        #expect(catcher.errors.compactMap { $0 as? ProxyTimeout } == [ProxyTimeout(code: .requestHead, seconds: 30)])
    }

    @Test func aClientWithARequestInProgressIsNotTimedOutThenIdles() throws {
        let timer = ClientTimeoutHandler(timeouts: Self.timeouts)
        let (loop, channel, catcher) = try active([timer])
        timer.requestStarted()
        loop.advanceTime(by: .seconds(600))
        #expect(channel.isActive)
        timer.responseEnded()
        loop.advanceTime(by: .seconds(59))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
        #expect(catcher.errors.compactMap { $0 as? ProxyTimeout } == [ProxyTimeout(code: .clientIdle, seconds: 60)])
    }

    @Test func anEarlierDeadlineThanTheNextLookMovesTheTimer() throws {
        // A long idle timeout looks 15 s ahead; the next request's head is due sooner than that.
        let timer = ClientTimeoutHandler(timeouts: .init(head: 5, idle: 600))
        let (loop, channel, catcher) = try active([timer])
        timer.requestStarted()
        timer.responseEnded()
        loop.advanceTime(by: .seconds(1))
        try channel.writeInbound(ByteBuffer(string: "GET / HT"))
        loop.advanceTime(by: .milliseconds(5100))
        #expect(!channel.isActive)
        #expect(catcher.errors.compactMap { $0 as? ProxyTimeout } == [ProxyTimeout(code: .requestHead, seconds: 5)])
    }

    @Test func theRequestHandlerReportsHeadsAndTheHandshake() throws {
        let timer = ClientTimeoutHandler(timeouts: Self.timeouts, start: .interceptedTunnel)
        let (loop, channel, catcher) = try active([timer, ClientRequestTimeoutHandler(timer: timer)])
        loop.advanceTime(by: .seconds(5))
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
        loop.advanceTime(by: .seconds(9))  // past the handshake deadline, which no longer applies
        #expect(channel.isActive)
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        channel.pipeline.fireChannelRead(HTTPServerRequestPart.head(head))
        loop.advanceTime(by: .seconds(100))
        #expect(channel.isActive)
        timer.responseEnded()  // as ClientHandler tells it when it writes a response's end
        loop.advanceTime(by: .seconds(61))
        #expect(!channel.isActive)
        #expect(catcher.errors.compactMap { $0 as? ProxyTimeout } == [ProxyTimeout(code: .clientIdle, seconds: 60)])
    }

    /// A refused CONNECT (a 502 or 407, so the handler is still in place) whose client sent more bytes in the same
    /// write: as the connection closes the decoder hands those on raw, and they must pass, not trap.
    @Test func bytesAfterARefusedConnectPassThrough() throws {
        final class Sink: ChannelInboundHandler {
            typealias InboundIn = Any
            var reads = 0
            func channelRead(context: ChannelHandlerContext, data: NIOAny) { reads += 1 }
        }
        let timer = ClientTimeoutHandler(timeouts: Self.timeouts)
        let sink = Sink()
        let (_, channel, _) = try active([timer, ClientRequestTimeoutHandler(timer: timer), sink])
        let connect = HTTPRequestHead(version: .http1_1, method: .CONNECT, uri: "localhost:443")
        channel.pipeline.fireChannelRead(HTTPServerRequestPart.head(connect))
        channel.pipeline.fireChannelRead(HTTPServerRequestPart.end(nil))
        try channel.writeOutbound(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .badGateway)))
        channel.pipeline.fireChannelRead(ByteBuffer(bytes: [0, 1, 2, 0x67, 0x61]))
        #expect(sink.reads == 3)
    }

    @Test func aStalledClientHandshakeInAnInterceptedTunnelIsClosed() throws {
        let timer = ClientTimeoutHandler(timeouts: Self.timeouts, start: .interceptedTunnel)
        let (loop, channel, catcher) = try active([timer])
        loop.advanceTime(by: .seconds(11))
        #expect(!channel.isActive)
        #expect(catcher.errors.compactMap { $0 as? ProxyTimeout } == [ProxyTimeout(code: .tlsHandshake, seconds: 10)])
        let (reason, detail) = FailureClassifier.tls(ProxyTimeout(code: .tlsHandshake, seconds: 10), leg: "client")
        #expect(reason == .handshakeTimeout)
        #expect(detail == "the client did not finish the TLS handshake within 10 s (--tls-handshake-timeout)")
    }

    @Test func aRelayedTunnelStaysOpenWhileBytesFlowOutward() throws {
        let timer = ClientTimeoutHandler(timeouts: Self.timeouts, start: .relayedTunnel)
        let (loop, channel, _) = try active([timer])
        for _ in 0..<10 {
            loop.advanceTime(by: .seconds(200))
            try channel.writeOutbound(ByteBuffer(string: "from upstream"))
        }
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(301))
        #expect(!channel.isActive)
    }

    @Test func anUpstreamHandshakeThatStallsFailsTheConnectionWithTheTimeout() throws {
        let upstream = UpstreamTimeoutHandler(timeouts: .upstream(ProxyLimits()), tls: true)
        let (loop, channel, catcher) = try active([upstream])
        upstream.requestStarted()  // as UpstreamHandler tells it when it writes a request head
        loop.advanceTime(by: .seconds(11))
        #expect(!channel.isActive)
        #expect(catcher.errors.compactMap { $0 as? ProxyTimeout } == [ProxyTimeout(code: .tlsHandshake, seconds: 10)])
    }

    @Test func aPooledUpstreamConnectionIsClosedAfterItsIdleTimeout() throws {
        let upstream = UpstreamTimeoutHandler(timeouts: .upstream(ProxyLimits()), tls: true)
        let (loop, channel, catcher) = try active([upstream])
        upstream.requestStarted()  // as UpstreamHandler tells it when it writes a request head
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
        loop.advanceTime(by: .seconds(100))  // a slow response is not idleness
        #expect(channel.isActive)
        try channel.writeInbound(HTTPClientResponsePart.end(nil))
        loop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
        #expect(catcher.errors.compactMap { $0 as? ProxyTimeout } == [ProxyTimeout(code: .upstreamIdle, seconds: 30)])
    }

    @Test func anUpstreamHandlerWritingAHeadTellsItsTimerTheRequestStarted() throws {
        let timer = UpstreamTimeoutHandler(timeouts: .upstream(ProxyLimits()), tls: true)
        let handler = UpstreamHandler(key: "idp.example:443", isTLS: true, insecure: false)
        handler.timer = timer
        let (loop, channel, _) = try active([timer, handler])
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
        handler.write(.head(Self.get), flush: true)
        #expect(try channel.readOutbound(as: HTTPClientRequestPart.self) != nil)
        // Waiting for a response is not the pool's idle wait (30 s): the connection stays open.
        loop.advanceTime(by: .seconds(100))
        #expect(channel.isActive)
    }
}
