import AuthtapModel
import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2

/// HTTP/2 on the client leg: the connection's HTTP/1 handlers make way for NIOHTTP2's after ALPN chose h2, and
/// every stream the client opens gets a `ClientHandler` of its own behind NIOHTTP2's HTTP/1 codec, so one stream
/// is one exchange and the HTTP/1 logic (forwarding, recording, failures) serves both versions.
extension ClientHandler {
    func switchToHTTP2(
        context: ChannelHandlerContext,
        codecs: (decoder: ByteToMessageHandler<HTTPRequestDecoder>, encoder: HTTPResponseEncoder)
    ) {
        let sync = context.pipeline.syncOperations
        let factory = HTTP2StreamFactory(
            shared: shared, mode: mode, connectionID: connectionID, clientAddress: clientAddress, facts: facts,
            clientTLS: clientTLS, timer: timer)
        let streams = NIOLoopBound(factory, eventLoop: context.eventLoop)
        let watch = HTTP2GoAwayWatch()
        let connection = HTTP2ClientConnection(
            recorder: ExchangeRecorder(shared: shared, connectionID: connectionID, clientAddress: clientAddress),
            origin: fixedOrigin, tunnel: tunnel, facts: facts, clientTLS: clientTLS, watch: watch)
        tunnel = nil
        do {
            // Before the decoder, whose removal completes later: bytes decrypted from now on are HTTP/2 frames.
            let http2 = NIOHTTP2Handler(
                mode: .server, eventLoop: context.eventLoop, connectionConfiguration: .init(),
                streamConfiguration: .init(),
                inboundStreamInitializer: { channel in streams.value.initialize(channel) })
            try sync.addHandler(http2, position: .before(codecs.decoder))
            try sync.addHandler(watch, position: .before(http2))
            try sync.addHandler(connection, position: .after(http2))
            if let requestTimer = try? sync.handler(type: ClientRequestTimeoutHandler.self) {
                sync.removeHandler(requestTimer, promise: nil)
            }
            sync.removeHandler(codecs.encoder, promise: nil)
            sync.removeHandler(codecs.decoder, promise: nil)
        } catch {
            context.close(promise: nil)
            return
        }
        sync.removeHandler(context: context, promise: nil)
    }

    /// A stream's handler starts after the connection's TLS handshake, with the connection's facts.
    func adoptStream(clientTLS: TLSFacts?, timer: ClientTimeoutHandler?) {
        machine.tlsHandshakeCompleted()
        self.clientTLS = clientTLS
        self.timer = timer
    }
}

/// Makes each stream's pipeline: NIOHTTP2's HTTP/1 server codec and a `ClientHandler`.
final class HTTP2StreamFactory {
    let shared: ProxyShared
    let mode: ClientHandler.Mode
    let connectionID: UInt64
    let clientAddress: String
    let facts: ConnectionFacts?
    let clientTLS: TLSFacts?
    let timer: ClientTimeoutHandler?

    init(
        shared: ProxyShared, mode: ClientHandler.Mode, connectionID: UInt64, clientAddress: String,
        facts: ConnectionFacts?, clientTLS: TLSFacts?, timer: ClientTimeoutHandler?
    ) {
        self.shared = shared
        self.mode = mode
        self.connectionID = connectionID
        self.clientAddress = clientAddress
        self.facts = facts
        self.clientTLS = clientTLS
        self.timer = timer
    }

    func initialize(_ channel: any Channel) -> EventLoopFuture<Void> {
        let handler = ClientHandler(
            shared: shared, mode: mode, connectionID: connectionID, clientAddress: clientAddress, codecs: nil,
            facts: facts)
        handler.adoptStream(clientTLS: clientTLS, timer: timer)
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandlers([HTTP2FramePayloadToHTTP1ServerCodec(), handler])
        }
    }
}

/// After NIOHTTP2's handler on an HTTP/2 client connection: records what belongs to the connection rather than a
/// stream (a client's protocol errors, a GOAWAY with an error code) and the tunnel when the connection ends.
final class HTTP2ClientConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame

    private var recorder: ExchangeRecorder
    private let origin: (scheme: Scheme, host: String, port: Int, prefix: String)?
    private var tunnel: Tunnel?
    private let facts: ConnectionFacts?
    private let clientTLS: TLSFacts?
    private let watch: HTTP2GoAwayWatch
    private var failureRecorded = false

    init(
        recorder: ExchangeRecorder, origin: (scheme: Scheme, host: String, port: Int, prefix: String)?,
        tunnel: Tunnel?, facts: ConnectionFacts?, clientTLS: TLSFacts?, watch: HTTP2GoAwayWatch
    ) {
        self.watch = watch
        self.recorder = recorder
        self.origin = origin
        self.tunnel = tunnel
        self.facts = facts
        self.clientTLS = clientTLS
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .goAway(_, let code, _) = frame.payload, code != .noError {
            record(
                .clientHTTP2,
                detail: "the client closed the HTTP/2 connection with GOAWAY (\(FailureClassifier.name(code)))")
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let http2 = error is any NIOHTTP2Error || error is NIOHTTP2Errors.StreamError
        // A stream error reset only its stream (NIOHTTP2 sent RST_STREAM): the connection's other streams go on.
        if http2, !watch.goAwaySent {
            let base = (error as? NIOHTTP2Errors.StreamError)?.baseError ?? error
            let answer = watch.lastReset.map {
                "authtap reset stream \($0.stream) with RST_STREAM \(FailureClassifier.name(code: $0.code))"
            }
            let detail = "the client broke HTTP/2 on one stream (\(answer ?? "its stream was reset")): \(base)"
            return record(.clientHTTP2, detail: detail, once: false)
        }
        // A connection error, which NIOHTTP2 has answered with GOAWAY, or a failure below HTTP/2: the end of it.
        if http2 {
            let code = watch.goAway.map { FailureClassifier.name(code: $0) } ?? "?"
            record(.clientHTTP2, detail: "the client broke HTTP/2 (authtap answered GOAWAY \(code)): \(error)")
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if var tunnel {
            tunnel.closed(facts: facts)
            recorder.submit(tunnel)
            self.tunnel = nil
        }
        context.fireChannelInactive()
    }

    /// A record of a failure: the connection's is recorded once (what follows a protocol error is its consequence);
    /// each stream's, when `once` is false, as it comes.
    private func record(_ kind: ErrorKind, detail: String, once: Bool = true) {
        guard !failureRecorded, let origin else { return }
        if once { failureRecorded = true }
        var ex = recorder.record(
            method: "PRI", scheme: origin.scheme, host: origin.host, port: origin.port, target: "*")
        ex.httpVersion = "HTTP/2"
        ex.error = kind
        ex.errorDetail = detail
        ex.clientTLS = clientTLS
        ex.timings.end = 0
        recorder.submitStandalone(ex)
        tunnel?.error = kind
        tunnel?.errorDetail = detail
    }
}

extension Tunnel {
    /// The tunnel's client connection ended: its duration, its bytes each way and how it ended.
    mutating func closed(facts: ConnectionFacts?) {
        durationMs = Date().timeIntervalSince(start) * 1000
        bytesFromClient = facts?.bytesIn ?? 0
        bytesFromUpstream = facts?.bytesOut ?? 0
        if ending == "open" { ending = "client-closed" }
    }
}
