import AuthtapCA
import AuthtapModel
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import NIOTLS
import Testing

@testable import AuthtapProxy

/// The client leg inside an intercepted tunnel, without sockets: when ALPN chose h2 the connection's HTTP/1
/// handlers make way for NIOHTTP2's, which greet the client with SETTINGS; with http/1.1 nothing changes.
@Suite(.serialized) struct HTTP2SwitchTests {
    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel

    init() throws {
        let connector = UpstreamConnector(
            clientTLS: try NIOSSLContext(configuration: .makeClientConfiguration()),
            trust: UpstreamTrust(extraAnchors: [], includeSystem: false), insecure: false, connectTimeout: .seconds(1))
        let shared = ProxyShared(
            config: ProxyConfiguration(), writer: ClientHandlerTests.RecordingSink(),
            contexts: ServerContextCacheRef(cache: ClientHandlerTests.leaves), connector: connector, group: loop)
        let (decoder, encoder) = shared.requestCodecs(leftOverBytes: .dropBytes)
        let handler = ClientHandler(
            shared: shared, mode: .intercepted(host: "login.example", port: 443), connectionID: 1,
            clientAddress: "127.0.0.1:40000", codecs: (decoder, encoder), facts: ConnectionFacts())
        channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandlers([decoder, encoder, handler])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    }

    func has<H: ChannelHandler>(_ type: H.Type) -> Bool {
        (try? channel.pipeline.syncOperations.handler(type: type)) != nil
    }

    @Test func h2InALPNReplacesTheHTTP1HandlersAndSendsSettings() throws {
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: "h2"))
        loop.run()
        #expect(has(NIOHTTP2Handler.self) && has(HTTP2GoAwayWatch.self) && has(HTTP2ClientConnection.self))
        #expect(!has(ClientHandler.self) && !has(HTTPResponseEncoder.self))
        #expect(!has(ByteToMessageHandler<HTTPRequestDecoder>.self))
        // RFC 9113 §3.4: the server's preface is a SETTINGS frame (type 0x4 on stream 0).
        let first = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let header = Array(first.readableBytesView.prefix(9))
        #expect(header.count == 9 && header[3] == 0x4 && header[5..<9].allSatisfy { $0 == 0 })
    }

    @Test func http11InALPNKeepsTheHTTP1Handlers() {
        channel.pipeline.fireUserInboundEventTriggered(
            TLSUserEvent.handshakeCompleted(negotiatedProtocol: "http/1.1"))
        loop.run()
        #expect(has(ClientHandler.self) && has(HTTPResponseEncoder.self) && !has(NIOHTTP2Handler.self))
    }

    @Test func theWatchReadsGoAwayAndResetCodesSplitAcrossWrites() {
        var frames = FrameBoundaries()
        // SETTINGS (6-byte payload), RST_STREAM on stream 3 with PROTOCOL_ERROR, then GOAWAY FLOW_CONTROL_ERROR
        // (last stream 1) cut in the middle of its header and again in its payload.
        let settings: [UInt8] = [0, 0, 6, 0x4, 0, 0, 0, 0, 0] + [0, 3, 0, 0, 0, 100]
        let reset: [UInt8] = [0, 0, 4, 0x3, 0, 0, 0, 0, 3] + [0, 0, 0, 1]
        let goAway: [UInt8] = [0, 0, 8, 0x7, 0, 0, 0, 0, 0] + [0, 0, 0, 1, 0, 0, 0, 3]
        let first = frames.consume(ByteBuffer(bytes: settings + reset + goAway.prefix(2)).readableBytesView)
        let second = frames.consume(ByteBuffer(bytes: goAway[2..<13]).readableBytesView)
        let third = frames.consume(ByteBuffer(bytes: goAway.dropFirst(13)).readableBytesView)
        #expect(first == [.reset(stream: 3, code: 1)] && second.isEmpty && third == [.goAway(code: 3)])
        // A DATA payload that looks like a GOAWAY is payload, not a frame.
        var data = FrameBoundaries()
        let payload = data.consume(ByteBuffer(bytes: [0, 0, 17, 0x0, 0, 0, 0, 0, 1] + goAway).readableBytesView)
        #expect(payload.isEmpty)
    }
}
