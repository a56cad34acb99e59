import AuthtapModel
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import NIOTLS

/// The client side of one proxied connection: a forward proxy for absolute-form `http://`
/// requests and `CONNECT`, (after interception) the origin-form requests inside the tunnel, or a reverse
/// listener's requests. Over HTTP/2 there is one per stream, each carrying one exchange.
/// A shell over `ClientConnectionStateMachine`: it performs the machine's actions on the event loop,
/// never blocks, and holds reads for backpressure. `ExchangeRecorder` keeps the records.
final class ClientHandler: ChannelDuplexHandler, RemovableChannelHandler, UpstreamDelegate {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    enum Mode {
        case forward
        case intercepted(host: String, port: Int)
        case reverse(ReverseTarget)
    }

    struct Origin {
        var scheme: Scheme
        var host: String
        var port: Int
        var key: String
    }

    let shared: ProxyShared
    let mode: Mode
    let connectionID: UInt64
    let clientAddress: String
    /// The HTTP/1 codecs of this connection; `nil` on an HTTP/2 stream, whose codec is the stream's own.
    let codecs: (decoder: ByteToMessageHandler<HTTPRequestDecoder>, encoder: HTTPResponseEncoder)?
    /// Whether this handler carries one HTTP/2 stream.
    var isStream: Bool { codecs == nil }
    /// TLS facts of the client leg (intercepted mode).
    let facts: ConnectionFacts?
    var tunnel: Tunnel?

    var machine: ClientConnectionStateMachine
    var recorder: ExchangeRecorder
    var context: ChannelHandlerContext?
    /// Request parts written before the upstream connection is there.
    var pending: [HTTPClientRequestPart] = []
    /// Pipelined request parts, replayed once the current exchange is recorded.
    var queued: [NIOAny] = []
    /// Bytes that arrived while a CONNECT's codecs were being removed.
    var upgradeBuffer: [NIOAny] = []
    var upstream: UpstreamHandler?
    /// The connection's deadlines, told when a response has been written whole (nil in unit tests).
    var timer: ClientTimeoutHandler?
    var clientTLS: TLSFacts?
    var backpressureCheck: Scheduled<Void>?
    /// The last origin asked for on this connection, with its pool key.
    var lastOrigin: Origin?
    /// Where the current request goes, its forwarded head, and whether it was already retried.
    var current: (origin: Origin, head: HTTPRequestHead, retried: Bool)?
    /// With --allow-remote, this connection's own idle upstream connections: one client's upstream
    /// connection (and whatever a server sends on it) never serves another client.
    private var ownPool: UpstreamPool?
    /// With `--rewrite-urls`, the current exchange's rewriter, and a JSON response held until its body is whole.
    var rewrite: OriginRewriter?
    var heldResponse: (head: HTTPResponseHead, body: ByteBuffer)?
    /// The address the listener is bound to, when `--listen` names one.
    lazy var listenAddress: [UInt8]? = HostAddress.parse(shared.config.host)

    init(
        shared: ProxyShared, mode: Mode, connectionID: UInt64, clientAddress: String,
        codecs: (decoder: ByteToMessageHandler<HTTPRequestDecoder>, encoder: HTTPResponseEncoder)?,
        facts: ConnectionFacts? = nil, tunnel: Tunnel? = nil
    ) {
        self.shared = shared
        self.mode = mode
        self.connectionID = connectionID
        self.clientAddress = clientAddress
        self.codecs = codecs
        self.facts = facts
        self.tunnel = tunnel
        let machineMode: ClientConnectionStateMachine.Mode
        if case .forward = mode { machineMode = .forward } else { machineMode = .intercepted }
        machine = ClientConnectionStateMachine(
            mode: machineMode,
            requiresAuthentication: shared.config.proxyAuth != nil)
        recorder = ExchangeRecorder(shared: shared, connectionID: connectionID, clientAddress: clientAddress)
    }

    /// The origin every origin-form request goes to: the CONNECT's (intercepted) or the reverse target's.
    var fixedOrigin: (scheme: Scheme, host: String, port: Int, prefix: String)? {
        switch mode {
        case .forward: return nil
        case .intercepted(let host, let port): return (.https, host, port, "")
        case .reverse(let target): return (target.scheme, target.host, target.port, target.pathPrefix)
        }
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        ownPool?.closeAll()
    }

    /// Where idle upstream connections of this client wait: per event loop, or per client with --allow-remote.
    func upstreamPool(for loop: any EventLoop) -> UpstreamPool {
        guard shared.config.allowRemote else { return shared.pool(for: loop) }
        if let ownPool { return ownPool }
        let pool = UpstreamPool()
        ownPool = pool
        return pool
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Checked before unwrapping: once a CONNECT's codecs go, what arrives is raw bytes.
        if let bypass = machine.inboundBypass {
            if bypass == .bufferForUpgrade { upgradeBuffer.append(data) }
            return
        }
        let part = unwrapInboundIn(data)
        let action: ClientConnectionStateMachine.InboundAction
        switch part {
        // A stream ends by itself after its one exchange: never closed by authtap as "not keep-alive".
        case .head(let head): action = machine.requestHead(keepAlive: isStream || head.isKeepAlive)
        case .body: action = machine.requestBodyPart()
        case .end: action = machine.requestEnd()
        }
        switch (action, part) {
        case (.bufferForUpgrade, _):
            upgradeBuffer.append(data)
        case (.queue, _):
            queued.append(data)
        case (.drop, _):
            break
        case (.startRequest, .head(let head)):
            handleHead(head, context: context)
        case (.forwardBody, .body(let buffer)):
            recorder.requestBodyPart(buffer)
            send(.body(.byteBuffer(buffer)), flush: false)
        case (.recordDiscardedBody, .body(let buffer)):
            recorder.discardedBodyPart(buffer)
        case (.finishDiscarding(let close), _):
            recorder.submitLate()
            if close { context.close(promise: nil) }
        case (.openTunnel(let host, let port), _):
            handleConnect(host: host, port: port, context: context)
        case (.forwardEnd, .end(let trailers)):
            recorder.requestEnded()
            send(.end(trailers), flush: false)
            if let upstreamContext = upstream?.context { shared.flushAtEndOfTurn(upstreamContext) }
            if upstream != nil { recorder.requestSent() }
        case (.startRequest, _), (.forwardBody, _), (.recordDiscardedBody, _), (.forwardEnd, _):
            break  // the machine answers each part with an action of its own kind
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let upstreamContext = upstream?.context { shared.flushAtEndOfTurn(upstreamContext) }
        context.fireChannelReadComplete()
    }

    func send(_ part: HTTPClientRequestPart, flush: Bool) {
        if let upstream {
            upstream.write(part, flush: flush)
        } else if machine.isConnecting {
            pending.append(part)
        }
    }

    // MARK: Reads

    func read(context: ChannelHandlerContext) {
        switch machine.readRequested(writerBackedUp: shared.writer.isBackedUp, upstreamBlocked: upstreamBlocked) {
        case .read: context.read()
        case .hold: break
        case .holdAndRecheck: scheduleBackpressureCheck(context)
        }
    }

    private var upstreamBlocked: Bool { upstream?.context?.channel.isWritable == false }

    /// The writer is behind: look again shortly (the writer has no way to wake event loops).
    private func scheduleBackpressureCheck(_ context: ChannelHandlerContext) {
        guard backpressureCheck == nil else { return }
        backpressureCheck = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(1)) {
            self.backpressureCheck = nil
            self.resumeReadsIfPossible()
        }
    }

    func resumeReadsIfPossible() {
        guard let context else { return }
        let action = machine.readsMayResume(writerBackedUp: shared.writer.isBackedUp, upstreamBlocked: upstreamBlocked)
        switch action {
        case .read: context.read()
        case .holdAndRecheck: scheduleBackpressureCheck(context)
        case .hold, nil: break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { upstream?.resumeReads() } else { upstream?.holdReads = true }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Events of the client leg

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event {
            machine.tlsHandshakeCompleted()
            let version = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).tlsVersion
            clientTLS = facts?.tlsFacts(version: version, alpn: alpn)
            if alpn == "h2", let codecs {
                context.fireUserInboundEventTriggered(event)
                return switchToHTTP2(context: context, codecs: codecs)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let origin = fixedOrigin, machine.failsClientHandshake {
            recordClientTLSFailure(error, host: origin.host, port: origin.port)
            context.close(promise: nil)
            return
        }
        if let parserError = error as? HTTPParserError {
            let action = machine.requestParseFailed(
                headerOverflow: parserError == .headerOverflow,
                exchangeOpen: recorder.isOpen)
            if case .answer(let kind, let unauthenticated) = action {
                if unauthenticated {
                    // Bytes from a client that never authenticated: counted, not recorded.
                    shared.config.counters.countUnauthenticated()
                    recorder.discard()
                } else if !recorder.isOpen {
                    recorder.openPlaceholder()
                }
                detachUpstream(close: true)
                respondWithError(kind, status: .badRequest, detail: "\(parserError)")
                return
            }
        }
        if recorder.isOpen && !recorder.hasError {
            let (kind, detail) =
                isStream
                ? FailureClassifier.clientStream(error)
                : (
                    .clientGone,
                    FailureClassifier.isReset(error)
                        ? "the client reset the connection" : "client connection failed: \(type(of: error))"
                )
            recorder.failed(kind, detail: detail)
            if isStream { timer?.responseEnded() }
            finishExchange(releaseUpstream: false)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let origin = fixedOrigin, machine.closedDuringClientHandshake {
            recordClientTLSFailure(nil, host: origin.host, port: origin.port)
        }
        if recorder.isOpen {
            let detail =
                isStream
                ? "the client's HTTP/2 stream closed before the exchange finished"
                : "the client closed the connection before the exchange finished"
            recorder.failed(.clientGone, detail: detail)
            // The connection's timer counts a stream's exchange until it ends, answered or not.
            if isStream { timer?.responseEnded() }
            finishExchange(releaseUpstream: false)
        }
        recorder.submitLate()
        detachUpstream(close: true)
        ownPool?.closeAll()
        if var tunnel {
            tunnel.closed(facts: facts)
            recorder.submit(tunnel)
            self.tunnel = nil
        }
        machine.channelInactive()
        context.fireChannelInactive()
    }

    /// Lets go of the upstream connection in use, closing it when `close`.
    func detachUpstream(close: Bool) {
        guard let handler = upstream else { return }
        upstream = nil
        handler.delegate = nil
        if close { handler.channel?.close(promise: nil) }
    }
}
