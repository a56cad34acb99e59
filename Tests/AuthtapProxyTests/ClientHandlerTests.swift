import AuthtapCA
import AuthtapModel
import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOSSL
import Synchronization
import Testing

@testable import AuthtapProxy

/// The client handler in an `EmbeddedChannel`: the client's bytes go in, the response bytes come out, and the
/// records reach a sink the test reads. An embedded loop opens no sockets: a new upstream connection fails at
/// once, so a forwarded request is served by an upstream `EmbeddedChannel` put in the loop's pool first.
@Suite(.serialized) struct ClientHandlerTests {
    final class RecordingSink: ExchangeSink {
        struct Records {
            var exchanges: [Exchange] = []
            var tunnels: [Tunnel] = []
            var backedUp = false
        }
        let records = Mutex(Records())
        func submit(_ exchange: consuming Exchange) {
            let record = exchange
            records.withLock { $0.exchanges.append(record) }
        }
        func submit(_ tunnel: Tunnel) { records.withLock { $0.tunnels.append(tunnel) } }
        var isBackedUp: Bool { records.withLock { $0.backedUp } }
        func close() {}
        var exchanges: [Exchange] { records.withLock { $0.exchanges } }
        var tunnels: [Tunnel] { records.withLock { $0.tunnels } }
        func setBackedUp(_ value: Bool) { records.withLock { $0.backedUp = value } }
    }

    /// Counts the reads that reach the channel (the handler holds them for backpressure).
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = Any
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    let loop = EmbeddedEventLoop()
    let sink = RecordingSink()
    let shared: ProxyShared
    let channel: EmbeddedChannel
    let handler: ClientHandler
    let reads = ReadCounter()

    static let leaves: ServerContextCache = {
        do {
            let (certificate, key) = try CertificateAuthority.generate()
            // Inline: a leaf issued on a background queue would complete its promise on the embedded loop from
            // another thread.
            return try ServerContextCache(
                ca: CertificateAuthority(certificate: certificate, key: key), issuing: .inline)
        } catch {
            fatalError("test CA: \(error)")
        }
    }()

    /// `timed`: with the connection's deadline handlers in front, as the listener installs them.
    init(intercept: [String] = [], enforced: Bool = false, timed: Bool = false) throws {
        var config = ProxyConfiguration()
        config.port = 8080
        config.intercept = intercept
        config.targetPolicy.enforced = enforced
        let connector = UpstreamConnector(
            clientTLS: try NIOSSLContext(configuration: .makeClientConfiguration()),
            trust: UpstreamTrust(extraAnchors: [], includeSystem: false), insecure: false, connectTimeout: .seconds(1))
        shared = ProxyShared(
            config: config, writer: sink, contexts: ServerContextCacheRef(cache: Self.leaves),
            connector: connector, group: loop)
        shared.listenPort.store(8080, ordering: .relaxed)
        let decoder = ByteToMessageHandler(
            HTTPRequestDecoder(
                leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .drop,
                limitConfiguration: shared.decoderLimits))
        let encoder = HTTPResponseEncoder()
        handler = ClientHandler(
            shared: shared, mode: .forward, connectionID: 1, clientAddress: "127.0.0.1:40000",
            codecs: (decoder, encoder))
        channel = EmbeddedChannel(loop: loop)
        var front: [any ChannelHandler] = [reads]
        var requests: [any ChannelHandler] = []
        if timed {
            let timer = ClientTimeoutHandler(timeouts: shared.clientTimeouts)
            handler.timer = timer
            front.append(timer)
            requests.append(ClientRequestTimeoutHandler(timer: timer))
        }
        try channel.pipeline.syncOperations.addHandlers(front + [decoder, encoder] + requests + [handler])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    }

    /// Sends the client's bytes (a decoder error is answered by the handler, as on a socket).
    func send(_ text: String) {
        _ = try? channel.writeInbound(channel.allocator.buffer(string: text))
        loop.run()
    }

    /// Everything written to the client so far, as text.
    func received() throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += String(buffer: buffer)
        }
        return text
    }

    /// An idle upstream connection for `key`, waiting in the loop's pool.
    func pooledUpstream(key: String) throws -> EmbeddedChannel {
        let upstream = UpstreamHandler(key: key, isTLS: false, insecure: false)
        let peer = EmbeddedChannel(handler: upstream, loop: loop)
        try peer.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
        shared.pool(for: loop).put(upstream)
        return peer
    }

    // MARK: Forward proxy

    @Test func aForwardedRequestGoesUpstreamAndItsResponseIsRecorded() throws {
        let upstream = try pooledUpstream(key: "http://origin.example:80")
        send("GET http://origin.example/path?q=1 HTTP/1.1\r\nHost: origin.example\r\nConnection: keep-alive\r\n\r\n")
        guard case .head(let head) = try upstream.readOutbound(as: HTTPClientRequestPart.self) else {
            Issue.record("no head upstream")
            return
        }
        #expect(head.uri == "/path?q=1")
        #expect(head.headers["Host"] == ["origin.example"])
        #expect(head.headers["Connection"].isEmpty)  // hop-by-hop
        guard case .end = try upstream.readOutbound(as: HTTPClientRequestPart.self) else {
            Issue.record("no end upstream")
            return
        }

        let responseHeaders = HTTPHeaders([("Content-Length", "2"), ("Connection", "keep-alive")])
        try upstream.writeInbound(
            HTTPClientResponsePart.head(
                .init(
                    version: .http1_1, status: .ok,
                    headers: responseHeaders)))
        try upstream.writeInbound(HTTPClientResponsePart.body(upstream.allocator.buffer(string: "ok")))
        try upstream.writeInbound(HTTPClientResponsePart.end(nil))
        loop.run()
        channel.flush()
        let response = try received()
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(response.hasSuffix("\r\n\r\nok"))
        #expect(!response.lowercased().contains("connection:"))
        let records = sink.exchanges
        #expect(records.count == 1)
        #expect(records.first?.status == 200)
        #expect(records.first?.host == "origin.example")
        #expect(records.first?.target == "/path?q=1")
        #expect(records.first?.responseBody.bytes == Array("ok".utf8))
        #expect(records.first?.error == nil)
        #expect(shared.inflight.load(ordering: .relaxed) == 0)
        #expect(upstream.isActive)  // back in the pool
    }

    @Test func aWrittenResponseStartsTheIdleWaitAndAWaitingOneDoesNot() throws {
        let timed = try ClientHandlerTests(timed: true)
        let upstream = try timed.pooledUpstream(key: "http://origin.example:80")
        timed.send("GET http://origin.example/ HTTP/1.1\r\nHost: origin.example\r\n\r\n")
        while try upstream.readOutbound(as: HTTPClientRequestPart.self) != nil {}
        // A slow upstream: the client waits for its response, which is not idleness.
        timed.loop.advanceTime(by: .seconds(200))
        #expect(timed.channel.isActive)
        try upstream.writeInbound(
            HTTPClientResponsePart.head(.init(version: .http1_1, status: .ok, headers: ["Content-Length": "0"])))
        try upstream.writeInbound(HTTPClientResponsePart.end(nil))
        timed.loop.run()
        #expect(try timed.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
        // The response was written whole: the client's idle wait (--client-idle-timeout) runs from here.
        let idle = Int64(ProxyLimits().clientIdleTimeout)
        timed.loop.advanceTime(by: .seconds(idle - 1))
        #expect(timed.channel.isActive)
        timed.loop.advanceTime(by: .seconds(2))
        #expect(!timed.channel.isActive)
    }

    @Test func aResponseThatEndsBeforeItsRequestIsRecordedAtTheRequestsEnd() throws {
        let upstream = try pooledUpstream(key: "http://origin.example:80")
        send("POST http://origin.example/upload HTTP/1.1\r\nHost: origin.example\r\nContent-Length: 6\r\n\r\nabc")
        try upstream.writeInbound(
            HTTPClientResponsePart.head(
                .init(
                    version: .http1_1, status: .payloadTooLarge,
                    headers: ["Content-Length": "0"])))
        try upstream.writeInbound(HTTPClientResponsePart.end(nil))
        loop.run()
        #expect(sink.exchanges.isEmpty)  // the request body is still arriving
        send("def")
        #expect(sink.exchanges.count == 1)
        #expect(sink.exchanges.first?.requestBody.size == 6)
        #expect(sink.exchanges.first?.status == 413)
    }

    // MARK: Errors

    @Test func aBadRequestIsAnswered400AndClosed() throws {
        send("GARBAGE\r\n\r\n")
        let response = try received()
        #expect(response.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(response.contains("X-Authtap-Error: malformed-request"))
        #expect(!channel.isActive)
        #expect(sink.exchanges.first?.error == .malformedRequest)
    }

    @Test func anOriginFormRequestIsRefused() throws {
        send("GET /path HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try received().hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(sink.exchanges.first?.error == .malformedRequest)
        #expect(channel.isActive)  // a keep-alive request: the connection stays
    }

    @Test func aTargetThePolicyRefusesIsAnswered403() throws {
        let policed = try ClientHandlerTests(enforced: true)
        policed.send("GET http://10.0.0.1/ HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n")
        #expect(try policed.received().hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
        #expect(policed.sink.exchanges.first?.error == .forbiddenTarget)
    }

    @Test func aRequestToTheProxyItselfIsRefused() throws {
        send("GET http://127.0.0.1:8080/ HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        #expect(try received().hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(sink.exchanges.first?.error == .forbiddenTarget)
    }

    @Test func anUpstreamThatCannotBeReachedIsAnswered502() throws {
        send("GET http://origin.example/ HTTP/1.1\r\nHost: origin.example\r\n\r\n")
        #expect(try received().hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
        #expect(sink.exchanges.count == 1)
        #expect(sink.exchanges.first?.status == 502)
        #expect(shared.inflight.load(ordering: .relaxed) == 0)
    }

    @Test func anUpstreamThatClosesBeforeRespondingIsAnswered502() throws {
        let upstream = try pooledUpstream(key: "http://origin.example:80")
        send("GET http://origin.example/ HTTP/1.1\r\nHost: origin.example\r\n\r\n")
        try upstream.close().wait()
        loop.run()
        let response = try received()
        #expect(response.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
        #expect(response.contains("X-Authtap-Error: upstream-closed"))
        #expect(sink.exchanges.first?.error == .upstreamClosed)
    }

    // MARK: CONNECT

    @Test func anInterceptedConnectAnswers200AndInstallsTheTLSGate() throws {
        send("CONNECT idp.example:443 HTTP/1.1\r\nHost: idp.example:443\r\n\r\n")
        #expect(try received().hasPrefix("HTTP/1.1 200 Connection established\r\n"))
        let pipeline = channel.pipeline.syncOperations
        #expect((try? pipeline.handler(type: ClientHelloGate.self)) != nil)
        #expect((try? pipeline.handler(type: TLSObserver.self)) != nil)
        // The listener's handler left; the tunnel's own (intercepted) handler took its place.
        #expect((try? pipeline.context(handler: handler)) == nil)
        #expect((try? pipeline.handler(type: ClientHandler.self)) != nil)
        #expect(sink.exchanges.isEmpty)  // the tunnel's row records an intercepted CONNECT
        #expect(shared.inflight.load(ordering: .relaxed) == 0)
    }

    @Test func aClientHelloInTheTunnelIsAnsweredWithTheInterceptedHostsLeaf() throws {
        // A real ClientHello, from BoringSSL's client side in its own embedded channel.
        let client = EmbeddedChannel(loop: loop)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        try client.pipeline.syncOperations.addHandler(
            NIOSSLClientHandler(context: NIOSSLContext(configuration: tls), serverHostname: "Idp.Example"))
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        var hello = client.allocator.buffer(capacity: 512)
        while var part = try client.readOutbound(as: ByteBuffer.self) { hello.writeBuffer(&part) }
        #expect(hello.readableBytes > 100 && hello.getInteger(at: 0, as: UInt8.self) == 0x16)

        send("CONNECT idp.example:443 HTTP/1.1\r\nHost: idp.example:443\r\n\r\n")
        #expect(try received().hasPrefix("HTTP/1.1 200 Connection established\r\n"))
        _ = try? channel.writeInbound(hello)
        loop.run()
        var answer = channel.allocator.buffer(capacity: 4096)
        while var part = try channel.readOutbound(as: ByteBuffer.self) { answer.writeBuffer(&part) }
        // A handshake record (ServerHello): the gate issued the leaf and handed the bytes to BoringSSL.
        #expect(answer.getInteger(at: 0, as: UInt8.self) == 0x16)
        #expect(answer.getInteger(at: 5, as: UInt8.self) == 0x02)
        #expect(channel.isActive)
        _ = try? client.finish()
    }

    @Test func bytesThatFollowTheConnectReachTheTunnelAndNonTLSIsRefused() throws {
        send("CONNECT idp.example:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: idp.example\r\n\r\n")
        let out = try received()
        #expect(out.hasPrefix("HTTP/1.1 200 Connection established\r\n"))
        #expect(out.contains("HTTP/1.1 400 Bad Request\r\n"))
        #expect(out.contains("X-Authtap-Error: non-tls-in-tunnel"))
        #expect(sink.exchanges.map(\.error) == [.nonTLSInTunnel])
        #expect(!channel.isActive)
        #expect(sink.tunnels.first?.error == .nonTLSInTunnel)
    }

    @Test func aRelayedConnectWhoseTargetFailsIsAnswered502AndRecordsItsTunnel() throws {
        let relaying = try ClientHandlerTests(intercept: ["only.example"])
        relaying.send("CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n")
        #expect(try relaying.received().hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
        #expect(relaying.sink.tunnels.count == 1)
        #expect(relaying.sink.tunnels.first?.ending == "connect-failed")
        #expect(relaying.sink.tunnels.first?.intercepted == false)
        #expect(relaying.sink.exchanges.first?.method == "CONNECT")
    }

    @Test func aConnectToSomethingThatIsNotHostAndPortIsRefused() throws {
        send("CONNECT nowhere:99999 HTTP/1.1\r\nHost: nowhere\r\n\r\n")
        #expect(try received().hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(sink.exchanges.first?.error == .badConnectTarget)
    }

    // MARK: Backpressure

    @Test func aBackedUpSinkHoldsReadsUntilItCatchesUp() throws {
        sink.setBackedUp(true)
        let before = reads.reads
        channel.read()
        #expect(reads.reads == before)  // held
        loop.advanceTime(by: .milliseconds(5))
        #expect(reads.reads == before)  // still behind: held
        sink.setBackedUp(false)
        loop.advanceTime(by: .milliseconds(5))
        #expect(reads.reads == before + 1)
    }
}
