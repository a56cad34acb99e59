import AuthtapCA
import AuthtapModel
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization
import X509

/// What the upstream leg reports to the client handler currently using it.
protocol UpstreamDelegate: AnyObject {
    func upstreamReceived(_ part: HTTPClientResponsePart)
    func upstreamFailed(_ error: (any Error)?)
    func upstreamWritabilityChanged(isWritable: Bool)
    func upstreamReadComplete()
}

/// The result of certificate verification, written by the verification callback.
final class VerificationBox: Sendable {
    struct Value: Sendable {
        var verdict: UpstreamTrust.Verdict?
        var certificate: CertificateSummary?
    }
    let value = Mutex(Value())
}

/// The tail of an upstream connection, or of one HTTP/2 stream on it: relays response parts to its delegate and
/// holds reads while the client cannot take more (backpressure). An HTTP/1 connection carries one exchange at a
/// time and may go back to the pool; a stream carries one exchange and ends with it.
final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    let key: String
    let facts = ConnectionFacts()
    /// Reads the handshake on the network side; removed once the handshake is done.
    var observer: TLSObserver?
    let verification = VerificationBox()
    let isTLS: Bool
    let insecure: Bool
    weak var delegate: (any UpstreamDelegate)?
    private(set) var context: ChannelHandlerContext?
    var holdReads = false
    private var readPending = false
    private(set) var handshakeDone = false
    private(set) var negotiatedALPN: String?
    private(set) var lastError: (any Error)?
    /// Set when the response in flight says the connection ends after it.
    var closeAfterResponse = false
    /// When TCP connected and TLS completed; reported once, on the connection's first exchange.
    var connectedAt: NIODeadline?
    var handshakeAt: NIODeadline?
    var reported = false
    /// The pool this connection waits in while idle (`nil` while it carries an exchange).
    weak var idleInPool: UpstreamPool?
    /// This connection's deadlines, told when a request starts.
    var timer: UpstreamTimeoutHandler?
    /// The HTTP/2 connection this stream belongs to (`nil` on an HTTP/1 connection).
    private(set) var session: UpstreamSession?
    /// The HTTP/2 connection this handler's connection became when the server chose h2 in ALPN.
    var upgraded: UpstreamSession?
    /// Completed once the TLS handshake ended, either way (at once for plain TCP).
    private var settled: EventLoopPromise<UpstreamHandler>?
    /// Whether this connection may become HTTP/2 (h2 was offered in ALPN).
    var offersHTTP2 = false

    init(key: String, isTLS: Bool, insecure: Bool) {
        self.key = key
        self.isTLS = isTLS
        self.insecure = insecure
    }

    /// A handler for one stream of `session`, with its connection's facts.
    init(stream session: UpstreamSession) {
        key = session.key
        isTLS = session.isTLS
        insecure = session.insecure
        self.session = session
        handshakeDone = true
        negotiatedALPN = "h2"
        settledFacts = session.facts
        connectedAt = session.connectedAt
        handshakeAt = session.handshakeAt
        reported = session.streamsOpened > 0
        session.streamsOpened += 1
    }

    var channel: (any Channel)? { context?.channel }
    /// Whether it may wait in the pool for another exchange: an HTTP/1 connection in good order (a stream never).
    var isUsable: Bool {
        session == nil && context?.channel.isActive == true && lastError == nil && !closeAfterResponse
            && (!isTLS || handshakeDone)
    }

    /// Completes `promise` with this handler once TLS has settled: handshake done (and, when h2 was chosen, the
    /// connection turned HTTP/2) or failed. A failed handshake is reported by the exchange that asked for it.
    func handOn(_ channel: any Channel, to promise: EventLoopPromise<UpstreamHandler>) {
        guard isTLS, !handshakeDone, channel.isActive, lastError == nil else {
            return promise.assumeIsolated().succeed(self)
        }
        settled = promise
    }

    private func settle() {
        settled.take()?.assumeIsolated().succeed(self)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if let delegate {
            delegate.upstreamReceived(part)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event {
            handshakeDone = true
            negotiatedALPN = alpn
            handshakeAt = .now()
            // Its facts (hellos, alerts during the handshake) are complete: every later read and
            // write of this connection skips the observer.
            if let observer = observer {
                self.observer = nil
                context.pipeline.syncOperations.removeHandler(observer, promise: nil)
            }
            if alpn == "h2", offersHTTP2 {
                context.fireUserInboundEventTriggered(event)
                becomeHTTP2(context: context)
                return settle()
            }
            settle()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if lastError == nil { lastError = error }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        settle()
        if let delegate {
            self.delegate = nil
            delegate.upstreamFailed(lastError)
        }
        idleInPool?.remove(self)
        idleInPool = nil
        context.fireChannelInactive()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if holdReads { readPending = true } else { context.read() }
    }

    func resumeReads() {
        holdReads = false
        if readPending, let context {
            readPending = false
            context.read()
        }
    }

    /// Once the handshake is done the facts no longer change: built once per connection.
    private var settledFacts: TLSFacts?

    /// TLS facts for the upstream leg of an exchange.
    func tlsFacts() -> TLSFacts? {
        guard isTLS else { return nil }
        if let settledFacts { return settledFacts }
        var f = facts.tlsFacts(
            version: try? context?.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).tlsVersion,
            alpn: negotiatedALPN)
        let v = verification.value.withLock { $0 }
        f.peerCertificate = v.certificate
        if insecure {
            f.verification = "insecure"
        } else if let verdict = v.verdict {
            f.verification = verdict == .trusted ? "verified" : "failed"
        }
        if handshakeDone { settledFacts = f }
        return f
    }

    func write(_ part: HTTPClientRequestPart, flush: Bool) {
        guard let context else { return }
        if case .head = part { timer?.requestStarted() }
        context.write(wrapOutboundOut(part), promise: nil)
        if flush { context.flush() }
    }
}

/// Idle upstream connections of one event loop, keyed by origin. Only connections whose
/// previous response ended cleanly and that both sides keep alive are put back. An HTTP/2 connection is
/// shared: one per origin carries every exchange's stream until it goes away.
final class UpstreamPool {
    private var idle: [String: [UpstreamHandler]] = [:]
    private var sessions: [String: UpstreamSession] = [:]
    /// Origins a connection is being opened to that may turn out HTTP/2, with the exchanges waiting for it: a burst
    /// of requests to a new origin shares the one connection instead of opening one each.
    private var opening: [String: [(UpstreamSession?) -> Void]] = [:]
    let maxPerKey = 64

    /// Claims the opening of `key`'s connection; `false` when one is being opened already.
    func startOpening(_ key: String) -> Bool {
        guard opening[key] == nil else { return false }
        opening[key] = []
        return true
    }

    /// Waits for the connection being opened to `key`: `waiter` gets its HTTP/2 session, or `nil` when it did not
    /// become one (it failed, or speaks HTTP/1.1, which carries one exchange at a time). `false` when none is.
    func waitForOpening(_ key: String, _ waiter: @escaping (UpstreamSession?) -> Void) -> Bool {
        guard opening[key] != nil else { return false }
        opening[key]?.append(waiter)
        return true
    }

    func finishOpening(_ key: String, session: UpstreamSession?) {
        for waiter in opening.removeValue(forKey: key) ?? [] { waiter(session) }
    }

    /// The origin's HTTP/2 connection, when one is open and takes new streams.
    func session(_ key: String) -> UpstreamSession? {
        guard let session = sessions[key] else { return nil }
        if session.isUsable { return session }
        sessions[key] = nil
        return nil
    }

    /// Shares `session` for its origin (the one already shared stays: a second serves only its first stream).
    func add(_ session: UpstreamSession) {
        guard self.session(session.key) == nil else { return }
        session.pool = self
        sessions[session.key] = session
    }

    func remove(_ session: UpstreamSession) {
        if sessions[session.key] === session { sessions[session.key] = nil }
    }

    func take(_ key: String) -> UpstreamHandler? {
        // Popped in place: copying the list out of the dictionary first would copy it on every take.
        while let handler = idle[key]?.popLast() {
            if handler.isUsable {
                handler.idleInPool = nil
                return handler
            }
        }
        return nil
    }

    func put(_ handler: UpstreamHandler) {
        guard handler.isUsable, (idle[handler.key]?.count ?? 0) < maxPerKey else {
            handler.channel?.close(promise: nil)
            return
        }
        handler.delegate = nil
        handler.holdReads = false
        handler.idleInPool = self
        idle[handler.key, default: []].append(handler)
    }

    func remove(_ handler: UpstreamHandler) {
        idle[handler.key]?.removeAll { $0 === handler }
    }

    func closeAll() {
        for list in idle.values { for h in list { h.channel?.close(promise: nil) } }
        idle = [:]
        let shared = sessions.values
        sessions = [:]
        for session in shared { session.close() }
    }
}

/// Opens upstream connections: TCP (with connect timeout) and, for https, TLS verified by
/// `UpstreamTrust` in a custom callback so a failure carries a structured reason.
struct UpstreamConnector: Sendable {
    let clientTLS: NIOSSLContext
    let trust: UpstreamTrust
    let insecure: Bool
    let connectTimeout: TimeAmount
    /// Whether h2 is offered in ALPN (the client context offers it too).
    var http2 = false
    /// The TLS handshake and pool idle deadlines of each upstream connection.
    var timeouts = ConnectionDeadlines.Timeouts()

    /// `addresses`, when given, are the only ones tried: those the target policy checked.
    func connect(
        scheme: Scheme, host: String, port: Int, key: String, addresses: [[UInt8]]? = nil,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<UpstreamHandler> {
        let offersHTTP2 = http2
        let isTLS = scheme == .https
        // A loop that cannot open sockets (an embedded one in tests) fails the connection instead of trapping.
        guard let base = ClientBootstrap(validatingGroup: eventLoop) else {
            return eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        let bootstrap =
            base
            .resolver(addresses.map { CheckedAddressResolver(addresses: $0, port: port, loop: eventLoop) })
            .connectTimeout(connectTimeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [clientTLS, trust, insecure, timeouts] channel in
                do {
                    let handler = UpstreamHandler(key: key, isTLS: isTLS, insecure: insecure)
                    handler.offersHTTP2 = offersHTTP2
                    let sync = channel.pipeline.syncOperations
                    if isTLS {
                        let observer = TLSObserver(facts: handler.facts)
                        handler.observer = observer
                        try sync.addHandler(observer)
                        let box = handler.verification
                        let sni = IPAddress.bytes(host) == nil ? host : nil
                        let tls = try NIOSSLClientHandler(context: clientTLS, serverHostname: sni) { certs, promise in
                            let chain = certs.compactMap { try? Certificate(derEncoded: $0.toDERBytes()) }
                            let summary = chain.first.map(UpstreamTrust.summary)
                            if insecure {
                                box.value.withLock { $0.certificate = summary }
                                promise.succeed(.certificateVerified)
                                return
                            }
                            Task {
                                let verdict = await trust.verify(chain: chain, host: host)
                                box.value.withLock { $0 = .init(verdict: verdict, certificate: summary) }
                                promise.succeed(verdict == .trusted ? .certificateVerified : .failed)
                            }
                        }
                        try sync.addHandler(tls)
                        try sync.addHandler(WriteCoalescer())
                    }
                    try sync.addHandler(HTTPRequestEncoder())
                    try sync.addHandler(
                        ByteToMessageHandler(
                            HTTPResponseDecoder(
                                leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .forward)))
                    let timer = UpstreamTimeoutHandler(timeouts: timeouts, tls: isTLS)
                    handler.timer = timer
                    try sync.addHandler(timer)
                    try sync.addHandler(handler)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        // Called on `eventLoop`, where the connection's channel lives too. The connect future completes when TCP
        // is established; the handler is handed on once TLS settled, when ALPN has said which HTTP version the
        // connection speaks.
        let promise = eventLoop.makePromise(of: UpstreamHandler.self)
        bootstrap.connect(host: host, port: port).assumeIsolated().whenComplete { result in
            do {
                let channel = try result.get()
                let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
                handler.connectedAt = .now()
                handler.handOn(channel, to: promise)
            } catch {
                promise.fail(error)
            }
        }
        return promise.futureResult
    }
}

/// The flushes of one event loop turn, issued together once the loop has handled every ready socket
/// (a task runs after the turn's I/O). Flushing each message as it was ready woke curl or the server
/// once per message, mid-turn; batched, each wakeup finds several messages, which saves CPU in the
/// proxy, the client and the server alike (docs/performance.md).
final class FlushBatch {
    private var contexts: [ChannelHandlerContext] = []
    private var running: [ChannelHandlerContext] = []

    func add(_ context: ChannelHandlerContext) {
        contexts.append(context)
        guard contexts.count == 1 else { return }
        context.eventLoop.assumeIsolated().execute { self.flushAll() }
    }

    private func flushAll() {
        swap(&contexts, &running)
        // A context removed from its pipeline since has no predecessor: its flush does nothing.
        for context in running { context.flush() }
        running.removeAll(keepingCapacity: true)
    }
}
