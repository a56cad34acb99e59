import AuthtapCA
import AuthtapModel
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// The client side of one proxied connection: a forward proxy for absolute-form `http://`
/// requests and `CONNECT`, or (after interception) the origin-form requests inside the tunnel.
/// A small state machine on the event loop; it never blocks and holds reads for backpressure.
final class ClientHandler: ChannelDuplexHandler, RemovableChannelHandler, UpstreamDelegate {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    enum Mode {
        case forward
        case intercepted(host: String, port: Int)
    }

    private enum State {
        case idle
        case connecting
        case forwarding
        /// The request was answered by authtap itself; its remaining body is read and dropped.
        case discarding
        case upgrading
        case closed
    }

    private let shared: ProxyShared
    private let mode: Mode
    private let connectionID: UInt64
    private let clientAddress: String
    private let decoder: ByteToMessageHandler<HTTPRequestDecoder>
    private let encoder: HTTPResponseEncoder
    /// TLS facts of the client leg (intercepted mode).
    private let facts: ConnectionFacts?
    private var tunnel: Tunnel?

    private var context: ChannelHandlerContext?
    private var state = State.idle
    private var exchange: Exchange?
    private var started = NIODeadline.now()
    private var requestBody = BodyCapture(limit: 0)
    private var responseBody = BodyCapture(limit: 0)
    private var pending: [HTTPClientRequestPart] = []
    private var queued: [NIOAny] = []
    private var upgradeBuffer: [NIOAny] = []
    private var upstream: UpstreamHandler?
    private var requestEnded = false
    private var responseStarted = false
    private var clientKeepAlive = true
    private var readPending = false
    private var handshakeDone = false
    private var clientTLS: TLSFacts?
    private var tlsFailureRecorded = false
    private var pendingConnect: (String, Int)?
    /// A response that completed before its request did (the server answered without reading the
    /// whole body): recorded once the request's remaining body has been read, or the client leaves.
    private var awaitingRequestEnd: Exchange?
    /// Requests seen on this connection (the first one decides "not HTTP inside the tunnel").
    private var exchangeCountOnConnection = 0
    /// Whether a request on this connection carried the proxy credentials: until then, with --proxy-auth,
    /// nothing from it is recorded (only counted).
    private var authenticated = false
    /// With --allow-remote, this connection's own idle upstream connections: one client's upstream
    /// connection (and whatever a server sends on it) never serves another client.
    private var ownPool: UpstreamPool?

    init(shared: ProxyShared, mode: Mode, connectionID: UInt64, clientAddress: String,
         decoder: ByteToMessageHandler<HTTPRequestDecoder>, encoder: HTTPResponseEncoder,
         facts: ConnectionFacts? = nil, tunnel: Tunnel? = nil)
    {
        self.shared = shared
        self.mode = mode
        self.connectionID = connectionID
        self.clientAddress = clientAddress
        self.decoder = decoder
        self.encoder = encoder
        self.facts = facts
        self.tunnel = tunnel
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        ownPool?.closeAll()
    }

    /// Where idle upstream connections of this client wait: per event loop, or per client with --allow-remote.
    private func upstreamPool(for loop: any EventLoop) -> UpstreamPool {
        guard shared.config.allowRemote else { return shared.pool(for: loop) }
        if let ownPool { return ownPool }
        let pool = UpstreamPool()
        ownPool = pool
        return pool
    }

    private func ms(_ at: NIODeadline) -> Double { Double((at - started).nanoseconds) / 1e6 }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .upgrading:
            upgradeBuffer.append(data)
            return
        case .closed:
            return
        case .connecting, .forwarding:
            if requestEnded {
                // A pipelined request: replayed once the current response is done.
                queued.append(data)
                return
            }
        case .idle, .discarding:
            break
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            if case .discarding = state { return }
            handleHead(head, context: context)
        case .body(let buffer):
            if case .discarding = state {
                if awaitingRequestEnd != nil { requestBody.append(buffer) }
                return
            }
            requestBody.append(buffer)
            send(.body(.byteBuffer(buffer)), flush: false)
        case .end(let trailers):
            if case .discarding = state {
                if var late = awaitingRequestEnd {
                    awaitingRequestEnd = nil
                    late.requestBody = requestBody.captured
                    shared.writer.submit(late)
                }
                state = .idle
                if !clientKeepAlive { context.close(promise: nil) }
                return
            }
            if let (host, port) = pendingConnect {
                pendingConnect = nil
                requestEnded = true
                return handleConnect(host: host, port: port, context: context)
            }
            requestEnded = true
            exchange?.requestBody = requestBody.captured
            send(.end(trailers), flush: false)
            if let upstreamContext = upstream?.context { shared.flushAtEndOfTurn(upstreamContext) }
            if upstream != nil { exchange?.timings.requestSent = ms(.now()) }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let upstreamContext = upstream?.context { shared.flushAtEndOfTurn(upstreamContext) }
        context.fireChannelReadComplete()
    }

    private func send(_ part: HTTPClientRequestPart, flush: Bool) {
        if let upstream {
            upstream.write(part, flush: flush)
        } else if case .connecting = state {
            pending.append(part)
        }
    }

    func read(context: ChannelHandlerContext) {
        if shouldHoldReads {
            readPending = true
            if case .idle = state { scheduleBackpressureCheck(context) }
        } else {
            context.read()
        }
    }

    private var backpressureCheck: Scheduled<Void>?

    /// The writer is behind: look again shortly (the writer has no way to wake event loops).
    private func scheduleBackpressureCheck(_ context: ChannelHandlerContext) {
        guard backpressureCheck == nil else { return }
        backpressureCheck = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(1)) {
            self.backpressureCheck = nil
            self.resumeReadsIfPossible()
        }
    }

    private var shouldHoldReads: Bool {
        switch state {
        case .idle: return shared.writer.isBackedUp
        case .connecting: return true
        // Reading on while the response comes keeps the socket's read interest registered (two
        // epoll_ctl calls per exchange otherwise); a pipelined request stops reads once one is queued,
        // and so does a writer that is behind (or the next request would start before it catches up).
        case .forwarding:
            return (requestEnded && (!queued.isEmpty || shared.writer.isBackedUp)) || upstream?.context?.channel.isWritable == false
        default: return false
        }
    }

    private func resumeReadsIfPossible() {
        guard readPending, let context else { return }
        if shouldHoldReads {
            // Still held: if only by the writer's backlog, look again shortly.
            if case .idle = state { scheduleBackpressureCheck(context) }
            return
        }
        readPending = false
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { upstream?.resumeReads() } else { upstream?.holdReads = true }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event {
            handshakeDone = true
            let version = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).tlsVersion
            clientTLS = facts?.tlsFacts(version: version, alpn: alpn)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case .intercepted(let host, let port) = mode, !handshakeDone {
            recordClientTLSFailure(error, host: host, port: port)
            context.close(promise: nil)
            return
        }
        if let parserError = error as? HTTPParserError, exchange == nil || !responseStarted {
            let kind: ErrorKind
            if case .intercepted = mode, parserError != .headerOverflow, exchangeCountOnConnection == 0 {
                kind = .nonHTTPInTunnel
            } else {
                kind = parserError == .headerOverflow ? .headersTooLarge : .malformedRequest
            }
            if case .forward = mode, shared.config.proxyAuth != nil, !authenticated {
                // Bytes from a client that never authenticated: counted, not recorded.
                shared.config.counters.countUnauthenticated()
                if exchange != nil { shared.inflight.subtract(1, ordering: .relaxed) }
                exchange = nil
            } else if exchange == nil {
                exchange = newExchange(method: "?", scheme: .http, host: "", port: 0, target: "")
                shared.inflight.add(1, ordering: .relaxed)
            }
            clientKeepAlive = false
            upstream?.delegate = nil
            upstream?.channel?.close(promise: nil)
            upstream = nil
            respondWithError(kind, status: .badRequest, detail: "\(parserError)")
            return
        }
        if exchange != nil && !(exchange?.error != nil) {
            exchange?.error = .clientGone
            exchange?.errorDetail = FailureClassifier.isReset(error) ? "the client reset the connection" : "client connection failed: \(type(of: error))"
            finishExchange(releaseUpstream: false)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .intercepted(let host, let port) = mode, !handshakeDone, !tlsFailureRecorded {
            recordClientTLSFailure(nil, host: host, port: port)
        }
        if exchange != nil {
            exchange?.error = .clientGone
            exchange?.errorDetail = "the client closed the connection before the exchange finished"
            finishExchange(releaseUpstream: false)
        }
        if var late = awaitingRequestEnd {
            awaitingRequestEnd = nil
            late.requestBody = requestBody.captured
            shared.writer.submit(late)
        }
        upstream?.delegate = nil
        upstream?.channel?.close(promise: nil)
        upstream = nil
        ownPool?.closeAll()
        if var tunnel {
            tunnel.durationMs = Date().timeIntervalSince(tunnel.start) * 1000
            tunnel.bytesFromClient = facts?.bytesIn ?? 0
            tunnel.bytesFromUpstream = facts?.bytesOut ?? 0
            if tunnel.ending == "open" { tunnel.ending = "client-closed" }
            shared.writer.submit(tunnel)
            self.tunnel = nil
        }
        state = .closed
        context.fireChannelInactive()
    }

    private func recordClientTLSFailure(_ error: (any Error)?, host: String, port: Int) {
        guard !tlsFailureRecorded else { return }
        tlsFailureRecorded = true
        var reason = TLSFailureReason.closedDuringHandshake
        var detail = "the client closed the connection during the TLS handshake (it may not trust the authtap CA)"
        if let alert = facts?.alertsFromPeer.first {
            reason = .handshakeAlert
            detail = "the client sent TLS alert \(alert.name) (\(alert.description)): it rejected authtap's certificate"
        } else if let error {
            (reason, detail) = FailureClassifier.tls(error, leg: "client")
            if reason == .handshakeAlert { detail += ": it rejected authtap's certificate" }
        }
        var ex = newExchange(method: "CONNECT", scheme: .https, host: host, port: port, target: "")
        ex.error = .clientTLS
        ex.tlsFailure = reason
        ex.errorDetail = detail
        ex.clientTLS = facts?.tlsFacts(version: nil, alpn: nil)
        ex.timings.end = 0
        shared.writer.submit(ex)
        if tunnel != nil {
            tunnel?.error = .clientTLS
            tunnel?.errorDetail = detail
            tunnel?.ending = "client-tls-failed"
        }
    }

    // MARK: Requests

    private func newExchange(method: String, scheme: Scheme, host: String, port: Int, target: String) -> Exchange {
        Exchange(connectionID: connectionID, clientAddress: clientAddress, scheme: scheme, host: host, port: port,
                 method: method, target: target, start: Date())
    }

    private func handleHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        started = .now()
        exchangeCountOnConnection += 1
        requestEnded = false
        responseStarted = false
        clientKeepAlive = head.isKeepAlive
        requestBody = BodyCapture(limit: shared.config.bodyLimit)
        responseBody = BodyCapture(limit: shared.config.bodyLimit)
        let version = "HTTP/\(head.version.major).\(head.version.minor)"
        if case .forward = mode, let auth = shared.config.proxyAuth {
            guard ProxyCredentials(user: auth.user, password: auth.password).accepts(head.headers) else {
                // Counted, never recorded: whoever can reach a remote listener could fill the database.
                shared.config.counters.countUnauthenticated()
                exchange = nil
                return respondWithError(.proxyAuthRequired, status: .proxyAuthenticationRequired,
                                        detail: "missing or wrong Proxy-Authorization",
                                        extraHeaders: [("Proxy-Authenticate", "Basic realm=\"authtap\"")])
            }
            authenticated = true
        }

        var target: (scheme: Scheme, host: String, port: Int, path: String)?
        if head.method == .CONNECT {
            target = nil
        } else if case .intercepted(let host, let port) = mode, head.uri.hasPrefix("/") {
            target = (.https, host, port, head.uri)
        } else {
            target = Self.parseAbsolute(head.uri)
        }
        var ex = newExchange(
            method: head.method.rawValue, scheme: target?.scheme ?? .http, host: target?.host ?? "",
            port: target?.port ?? 0, target: target?.path ?? head.uri)
        ex.httpVersion = version
        ex.requestHeaders = head.headers.map { HeaderField($0.name, $0.value) }
        ex.clientTLS = clientTLS
        exchange = ex
        shared.inflight.add(1, ordering: .relaxed)

        let headerBytes = head.headers.reduce(head.uri.utf8.count) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        if headerBytes > shared.config.maxHeaderBytes {
            clientKeepAlive = false
            return respondWithError(.headersTooLarge, status: .badRequest, detail: "request headers are \(headerBytes) bytes; the limit is \(shared.config.maxHeaderBytes)")
        }
        let framing: RequestFraming.Body
        switch RequestFraming.check(method: head.method, version: head.version, headers: head.headers) {
        case .success(let body):
            framing = body
        case .failure(let violation):
            // RFC 9112 §6.3: where this request ends is unknown, so nothing after it on the connection is read.
            clientKeepAlive = false
            return respondWithError(.malformedRequest, status: .badRequest,
                                    detail: "ambiguous request framing (request smuggling): \(violation.detail)")
        }
        if head.method == .CONNECT {
            guard case .forward = mode else {
                return respondWithError(.malformedRequest, status: .badRequest, detail: "CONNECT inside an intercepted tunnel")
            }
            guard let (host, port) = Self.parseAuthority(head.uri, defaultPort: nil) else {
                exchange?.target = head.uri
                return respondWithError(.badConnectTarget, status: .badRequest, detail: "CONNECT target \(head.uri.prefix(200)) is not host:port")
            }
            exchange?.scheme = .https
            exchange?.host = host
            exchange?.port = port
            exchange?.target = ""
            if let denial = checkTarget(host: host, port: port) { return deny(denial, host: host) }
            // The upgrade starts at the CONNECT's `.end`: after it, the decoder only forwards raw bytes.
            pendingConnect = (host, port)
            return
        }
        guard let target else {
            return respondWithError(.malformedRequest, status: .badRequest,
                          detail: "authtap is a proxy: send absolute-form requests (http://host/path) or use CONNECT")
        }
        if let denial = checkTarget(host: target.host, port: target.port) { return deny(denial, host: target.host) }

        var headers = RequestFraming.forwarded(Self.endToEnd(head.headers), body: framing, method: head.method)
        // The framing upstream reads must be the one authtap decoded, whatever hop-by-hop removal took away.
        guard case .success(let sent) = RequestFraming.check(method: head.method, version: .http1_1, headers: headers),
              sent == framing
        else {
            clientKeepAlive = false
            return respondWithError(.malformedRequest, status: .badRequest,
                                    detail: "ambiguous request framing: removing hop-by-hop fields would change it")
        }
        if !headers.contains(name: "host") {
            let defaultPort = target.scheme == .https ? 443 : 80
            let hostValue = target.host.contains(":") ? "[\(target.host)]" : target.host
            headers.add(name: "Host", value: target.port == defaultPort ? hostValue : "\(hostValue):\(target.port)")
        }
        let upstreamHead = HTTPRequestHead(version: .http1_1, method: head.method, uri: target.path, headers: headers)
        let key: String
        if let last = lastOrigin, last.port == target.port, last.scheme == target.scheme, last.host == target.host {
            key = last.key // a keep-alive connection asks for the same origin each time
        } else {
            key = "\(target.scheme.rawValue)://\(target.host.lowercased()):\(target.port)"
            lastOrigin = Origin(scheme: target.scheme, host: target.host, port: target.port, key: key)
        }
        pending = [.head(upstreamHead)]
        let origin = Origin(scheme: target.scheme, host: target.host, port: target.port, key: key)
        current = (origin, upstreamHead, false)
        if let idle = upstreamPool(for: context.eventLoop).take(key) {
            // Inside channelRead: the body that follows in this read joins the head, and
            // channelReadComplete (or the request's end) flushes both in one write.
            attach(idle, flush: false)
            return
        }
        connect(origin, context: context)
    }

    /// The last origin asked for on this connection, with its pool key.
    private var lastOrigin: Origin?

    /// Where the current request goes, its forwarded head, and whether it was already retried.
    private var current: (origin: Origin, head: HTTPRequestHead, retried: Bool)?

    struct Origin {
        var scheme: Scheme
        var host: String
        var port: Int
        var key: String
    }

    private func connect(_ target: Origin, context: ChannelHandlerContext) {
        state = .connecting
        resolveChecked(host: target.host, port: target.port, context: context) { addresses in
            self.open(target, addresses: addresses, context: context)
        }
    }

    private func open(_ target: Origin, addresses: [[UInt8]]?, context: ChannelHandlerContext) {
        shared.connector.connect(scheme: target.scheme, host: target.host, port: target.port, key: target.key,
                                 addresses: addresses, on: context.eventLoop)
            .assumeIsolated().whenComplete { result in
                guard case .connecting = self.state else {
                    if case .success(let handler) = result { handler.channel?.close(promise: nil) }
                    return
                }
                switch result {
                case .success(let handler):
                    self.attach(handler, flush: true)
                case .failure(let error):
                    let failure = FailureClassifier.connect(error, host: target.host, port: target.port)
                    self.pending = []
                    self.respondWithError(failure.kind, status: .badGateway, detail: failure.detail)
                }
            }
    }

    private func attach(_ handler: UpstreamHandler, flush: Bool) {
        upstream = handler
        handler.delegate = self
        handler.holdReads = false
        state = .forwarding
        if handler.reported {
            exchange?.connectionReused = true
        } else {
            handler.reported = true
            exchange?.timings.connect = handler.connectedAt.map(ms)
        }
        let parts = pending
        pending = []
        for part in parts { handler.write(part, flush: false) }
        if flush || requestEnded { handler.context?.flush() }
        if requestEnded { exchange?.timings.requestSent = ms(.now()) }
        handler.resumeReads()
        resumeReadsIfPossible()
    }

    // MARK: Upstream events

    func upstreamReceived(_ part: HTTPClientResponsePart) {
        guard let context else { return }
        switch part {
        case .head(let head):
            if head.status.code >= 100 && head.status.code < 200 && head.status != .switchingProtocols {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: head.status, headers: head.headers))), promise: nil)
                return
            }
            responseStarted = true
            exchange?.timings.firstByte = ms(.now())
            exchange?.status = Int(head.status.code)
            exchange?.responseHeaders = head.headers.map { HeaderField($0.name, $0.value) }
            upstream?.closeAfterResponse = !head.isKeepAlive
            var headers = Self.endToEnd(head.headers, hopByHop: Self.responseHopByHop)
            if !clientKeepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: head.status, headers: headers))), promise: nil)
        case .body(let buffer):
            responseBody.append(buffer)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            if !context.channel.isWritable {
                context.flush()
                upstream?.holdReads = true
            }
        case .end(let trailers):
            let keepAlive = clientKeepAlive
            // A future only when something waits for the write: most responses keep the connection.
            let done = keepAlive ? nil : context.eventLoop.makePromise(of: Void.self)
            context.write(wrapOutboundOut(.end(trailers)), promise: done)
            shared.flushAtEndOfTurn(context)
            exchange?.responseBody = responseBody.captured
            finishExchange(releaseUpstream: requestEnded)
            done?.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func upstreamReadComplete() {
        if let context { shared.flushAtEndOfTurn(context) }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable { resumeReadsIfPossible() }
    }

    func upstreamFailed(_ error: (any Error)?) {
        guard exchange != nil, let handler = upstream else { return }
        upstream = nil
        handler.delegate = nil
        if handler.isTLS && !handler.handshakeDone {
            exchange?.upstreamTLS = handler.tlsFacts()
            let verdict = handler.verification.value.withLock { $0.verdict }
            if case .failed(let reason, let detail) = verdict {
                exchange?.tlsFailure = reason
                return respondWithError(.upstreamTLS, status: .badGateway, detail: detail)
            }
            if let alert = handler.facts.alertsFromPeer.first {
                exchange?.tlsFailure = alert.description == 70 ? .protocolVersion : .handshakeAlert
                return respondWithError(.upstreamTLS, status: .badGateway, detail: "the upstream server sent TLS alert \(alert.name) (\(alert.description))")
            }
            let (reason, detail) = error.map { FailureClassifier.tls($0, leg: "upstream server") }
                ?? (.closedDuringHandshake, "the upstream server closed the connection during the TLS handshake")
            exchange?.tlsFailure = reason
            return respondWithError(.upstreamTLS, status: .badGateway, detail: detail)
        }
        // A pooled connection the server had already closed: a bodiless request that got no byte
        // back is sent again, once, on a new connection (as browsers and HTTP clients do).
        if exchange?.connectionReused == true, !responseStarted, requestEnded, requestBody.size == 0,
           let (origin, head, retried) = current, !retried, let context
        {
            current = (origin, head, true)
            exchange?.connectionReused = false
            pending = [.head(head), .end(nil)]
            connect(origin, context: context)
            return
        }
        let reset = FailureClassifier.isReset(error)
        if responseStarted {
            // Too late for a 502: the client already has a status line. Record and cut the client off.
            exchange?.error = reset ? .upstreamReset : .upstreamClosed
            exchange?.errorDetail = reset ? "the upstream server reset the connection mid-response" : "the upstream server closed the connection mid-response"
            exchange?.responseBody = responseBody.captured
            finishExchange(releaseUpstream: false)
            context?.close(promise: nil)
            return
        }
        if let parserError = error as? HTTPParserError {
            return respondWithError(.upstreamMalformed, status: .badGateway, detail: "the upstream response is not valid HTTP/1.1 (\(parserError))")
        }
        respondWithError(reset ? .upstreamReset : .upstreamClosed, status: .badGateway,
                         detail: reset ? "the upstream server reset the connection before responding" : "the upstream server closed the connection before responding")
    }

    // MARK: Endings

    /// Answers the current request from authtap itself; what is left of its body is read and dropped
    /// (or the connection closes when the client asked for that).
    private func respondWithError(_ kind: ErrorKind, status: HTTPResponseStatus, detail: String,
                                  extraHeaders: [(String, String)] = [], sentence custom: String? = nil)
    {
        guard let context else { return }
        let sentence = "\((custom ?? kind.sentence).dropLast()): \(detail).\n"
        var headers = HTTPHeaders([
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", String(sentence.utf8.count)),
            ("X-Authtap-Error", kind.rawValue),
        ])
        if let reason = exchange?.tlsFailure { headers.add(name: "X-Authtap-TLS-Failure", value: reason.rawValue) }
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        let closeAfter = !clientKeepAlive
        if closeAfter { headers.add(name: "Connection", value: "close") }
        exchange?.status = Int(status.code)
        exchange?.error = kind
        exchange?.errorDetail = detail
        exchange?.responseHeaders = headers.map { HeaderField($0.name, $0.value) }
        exchange?.responseBody = CapturedBody(bytes: Array(sentence.utf8), size: sentence.utf8.count)
        exchange?.requestBody = requestBody.captured
        exchange?.timings.firstByte = ms(.now())
        responseStarted = true
        let body = context.channel.allocator.buffer(string: sentence)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        let bodyPending = !requestEnded
        finishExchange(releaseUpstream: false)
        if closeAfter {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else if bodyPending {
            state = .discarding
        }
    }

    private func finishExchange(releaseUpstream: Bool) {
        // Moved out, not copied: a copy would retain and then release every field of the record.
        guard var ex = exchange.take() else { return }
        shared.inflight.subtract(1, ordering: .relaxed)
        ex.timings.end = ms(.now())
        ex.insecureUpstream = ex.scheme == .https && shared.config.insecureUpstream
        if let handler = upstream {
            ex.upstreamTLS = handler.tlsFacts()
            if !ex.connectionReused, let at = handler.handshakeAt {
                let tls = ms(at)
                ex.timings.tls = tls
                // Writes wait in the TLS handler until the handshake is done.
                if let sent = ex.timings.requestSent, sent < tls { ex.timings.requestSent = tls }
            }
            upstream = nil
            handler.delegate = nil
            if releaseUpstream && ex.error == nil, let loop = handler.context?.eventLoop {
                upstreamPool(for: loop).put(handler)
            } else {
                handler.channel?.close(promise: nil)
            }
        }
        ex.requestBody = requestBody.captured
        if !requestEnded, ex.error == nil, ex.method != "CONNECT" {
            // The response is complete but the request is not: keep reading (and recording) its body,
            // without forwarding it, and record the exchange when the request ends.
            awaitingRequestEnd = ex
            state = .discarding
            resumeReadsIfPossible()
            return
        }
        shared.writer.submit(ex)
        if case .discarding = state {
            resumeReadsIfPossible()
            return
        }
        state = .idle
        requestEnded = false
        if !queued.isEmpty, let context {
            let replay = queued
            queued = []
            for data in replay { channelRead(context: context, data: data) }
            // Outside a read, no channelReadComplete follows: what the replay wrote upstream goes now
            // (a request waiting for 100 Continue would otherwise wait for ever).
            upstream?.context?.flush()
        }
        resumeReadsIfPossible()
    }

    // MARK: CONNECT

    private func handleConnect(host: String, port: Int, context: ChannelHandlerContext) {
        // Checked before the 200: an intercepted tunnel's requests are checked again when they connect.
        resolveChecked(host: host, port: port, context: context) { addresses in
            self.openTunnel(host: host, port: port, addresses: addresses, context: context)
        }
    }

    private func openTunnel(host: String, port: Int, addresses: [[UInt8]]?, context: ChannelHandlerContext) {
        if shared.config.shouldIntercept(host: host, port: port) {
            // An intercepted CONNECT is not an exchange of its own: its tunnel row records it.
            exchange = nil
            shared.inflight.subtract(1, ordering: .relaxed)
            let tunnel = Tunnel(connectionID: connectionID, clientAddress: clientAddress, host: host, port: port, intercepted: true, start: Date())
            upgrade(context: context) { pipeline in
                let facts = ConnectionFacts()
                let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop, limitConfiguration: self.shared.decoderLimits))
                let encoder = HTTPResponseEncoder()
                let handler = ClientHandler(shared: self.shared, mode: .intercepted(host: host, port: port), connectionID: self.connectionID,
                                            clientAddress: self.clientAddress, decoder: decoder, encoder: encoder, facts: facts, tunnel: tunnel)
                let gate = ClientHelloGate(connectHost: host, contexts: self.shared.contexts, facts: facts) { ctx, bytes in
                    handler.rejectNonTLS(bytes, context: ctx)
                }
                try pipeline.addHandlers([TLSObserver(facts: facts), gate, decoder, encoder, handler], position: .first)
                try ClientTimeoutHandler.tunnelStarted(pipeline, intercepted: true, before: handler)
            }
        } else {
            state = .connecting
            let start = Date()
            let stats = TunnelStats(tunnel: Tunnel(connectionID: connectionID, clientAddress: clientAddress, host: host, port: port, intercepted: false, start: start), writer: shared.writer)
            ClientBootstrap(group: context.eventLoop)
                .resolver(addresses.map { CheckedAddressResolver(addresses: $0, port: port, loop: context.eventLoop) })
                .connectTimeout(shared.connector.connectTimeout)
                .connect(host: host, port: port)
                .assumeIsolated().whenComplete { result in
                    switch result {
                    case .failure(let error):
                        let failure = FailureClassifier.connect(error, host: host, port: port)
                        stats.tunnel.error = failure.kind
                        stats.tunnel.errorDetail = failure.detail
                        stats.tunnel.ending = "connect-failed"
                        stats.submit()
                        self.respondWithError(failure.kind, status: .badGateway, detail: failure.detail)
                    case .success(let peer):
                        self.exchange = nil
                        self.shared.inflight.subtract(1, ordering: .relaxed)
                        let (local, remote) = GlueHandler.matchedPair(stats: stats)
                        do {
                            try peer.pipeline.syncOperations.addHandler(remote)
                        } catch {
                            peer.close(promise: nil)
                            context.close(promise: nil)
                            return
                        }
                        self.upgrade(context: context) { pipeline in
                            try pipeline.addHandler(local, position: .first)
                            try ClientTimeoutHandler.tunnelStarted(pipeline, intercepted: false)
                        }
                    }
                }
        }
    }

    /// Answers `200 Connection established`, removes the HTTP codecs and hands the raw
    /// connection (and any bytes that arrived early) to the handlers `install` adds.
    private func upgrade(context: ChannelHandlerContext, install: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void) {
        state = .upgrading
        let head = HTTPResponseHead(version: .http1_1, status: .custom(code: 200, reasonPhrase: "Connection established"), headers: HTTPHeaders([("Content-Length", "0")]))
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().flatMap {
            context.pipeline.syncOperations.removeHandler(self.decoder)
        }.flatMap {
            context.pipeline.syncOperations.removeHandler(self.encoder)
        }.whenComplete { result in
            guard case .success = result, context.channel.isActive else {
                context.close(promise: nil)
                return
            }
            do {
                try install(context.pipeline.syncOperations)
            } catch {
                context.close(promise: nil)
                return
            }
            let buffered = self.upgradeBuffer
            self.upgradeBuffer = []
            self.state = .closed
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            for data in buffered { context.pipeline.fireChannelRead(data) }
            context.channel.read()
        }
    }

    /// Bytes inside an intercepted tunnel that are not TLS: record, answer 400 if it looks like HTTP, close.
    func rejectNonTLS(_ bytes: [UInt8], context: ChannelHandlerContext) {
        guard case .intercepted(let host, let port) = mode, !tlsFailureRecorded else { return }
        tlsFailureRecorded = true
        var ex = newExchange(method: "CONNECT", scheme: .https, host: host, port: port, target: "")
        ex.error = .nonTLSInTunnel
        ex.errorDetail = "the client sent \(bytes.count) bytes that are not a TLS ClientHello (first byte 0x\(String(bytes.first ?? 0, radix: 16)))"
        ex.timings.end = 0
        shared.writer.submit(ex)
        tunnel?.error = .nonTLSInTunnel
        tunnel?.ending = "error"
        let sentence = ErrorKind.nonTLSInTunnel.sentence + "\n"
        let looksHTTP = bytes.first.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") } ?? false
        if looksHTTP {
            let response = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(sentence.utf8.count)\r\nX-Authtap-Error: \(ErrorKind.nonTLSInTunnel.rawValue)\r\nConnection: close\r\n\r\n\(sentence)"
            // Written below the TLS layer: the gate sits at the network end.
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: response))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        } else {
            context.close(promise: nil)
        }
    }

    // MARK: Helpers

    /// The address the listener is bound to, when `--listen` names one.
    private lazy var listenAddress: [UInt8]? = HostAddress.parse(shared.config.host)

    /// The target checks that need no DNS (and the only ones on a loopback-only listener).
    private func checkTarget(host: String, port: Int) -> TargetPolicy.Denial? {
        let listenPort = shared.listenPort.load(ordering: .relaxed)
        return shared.config.targetPolicy.check(host: host, port: port, listenPort: listenPort, listenAddress: listenAddress)
    }

    private func checkResolved(_ addresses: [[UInt8]], port: Int) -> TargetPolicy.Denial? {
        let listenPort = shared.listenPort.load(ordering: .relaxed)
        return shared.config.targetPolicy.check(resolved: addresses, port: port, listenPort: listenPort,
                                                listenAddress: listenAddress)
    }

    private func deny(_ denial: TargetPolicy.Denial, host: String) {
        let detail = TargetPolicy.describe(denial, host: host)
        if denial == .selfLoop { return respondWithError(.forbiddenTarget, status: .badRequest, detail: detail) }
        respondWithError(.forbiddenTarget, status: .forbidden, detail: detail,
                         sentence: "authtap's target policy does not allow this destination.")
    }

    /// With the policy enforced: resolves `host` off the event loop and checks every address, then hands the
    /// checked addresses to `proceed` (a denial or a failed lookup has been answered already).
    private func resolveChecked(host: String, port: Int, context: ChannelHandlerContext,
                                proceed: @escaping ([[UInt8]]?) -> Void)
    {
        guard shared.config.targetPolicy.enforced else { return proceed(nil) }
        state = .connecting
        TargetResolution.resolve(host: host, on: context.eventLoop).assumeIsolated().whenComplete { result in
            guard case .connecting = self.state, self.exchange != nil else { return }
            switch result {
            case .failure:
                self.pending = []
                self.respondWithError(.dnsFailure, status: .badGateway, detail: "no address found for \(host)")
            case .success(let addresses):
                if let denial = self.checkResolved(addresses, port: port) {
                    self.pending = []
                    return self.deny(denial, host: host)
                }
                proceed(addresses)
            }
        }
    }

    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade",
    ]
    static let responseHopByHop: Set<String> = ["connection", "keep-alive", "proxy-connection"]
    /// Whether a name has the length of one above (te 2, trailer/upgrade 7, connection/keep-alive 10,
    /// proxy-connection 16, proxy-authenticate 18, proxy-authorization 19): other names need no lowercased copy.
    private static func mayBeHopByHop(_ name: String) -> Bool {
        switch name.utf8.count {
        case 2, 7, 10, 16, 18, 19: return true
        default: return false
        }
    }

    /// The headers to forward: without hop-by-hop fields and those the Connection header names.
    /// Most messages carry none, and then go on as they came, with no copy.
    static func endToEnd(_ headers: HTTPHeaders, hopByHop: Set<String> = hopByHop) -> HTTPHeaders {
        // Lower-case names to drop: the hop-by-hop fields present, and the tokens of Connection.
        var drop: [String] = []
        for (name, value) in headers where mayBeHopByHop(name) {
            let lower = name.lowercased()
            guard hopByHop.contains(lower) else { continue }
            drop.append(lower)
            if lower == "connection" {
                for var token in value.split(separator: ",") {
                    // Trimmed here rather than with Foundation's trimmingCharacters (the event loop).
                    while token.first == " " || token.first == "\t" { token = token.dropFirst() }
                    while token.last == " " || token.last == "\t" { token = token.dropLast() }
                    if !token.isEmpty { drop.append(token.lowercased()) }
                }
            }
        }
        if drop.isEmpty { return headers }
        // One pass that keeps the rest in order (nginx and most servers send `Connection: keep-alive`
        // on every response, so this runs for nearly every one of them).
        var kept = HTTPHeaders()
        kept.reserveCapacity(headers.count)
        for (name, value) in headers where !drop.contains(where: { Self.sameName(name, lowercased: $0) }) {
            kept.add(name: name, value: value)
        }
        return kept
    }

    /// ASCII case-insensitive `name == lower` (`lower` already lower case), without a copy.
    static func sameName(_ name: String, lowercased lower: String) -> Bool {
        let a = name.utf8, b = lower.utf8
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x != y {
            guard x >= UInt8(ascii: "A"), x <= UInt8(ascii: "Z"), x | 0x20 == y else { return false }
        }
        return true
    }

    static func authorized(_ headers: HTTPHeaders, user: String, password: String) -> Bool {
        ProxyCredentials(user: user, password: password).accepts(headers)
    }

    /// `http://host[:port]/path?query` → parts; `https://` too (authtap then speaks TLS upstream).
    static func parseAbsolute(_ uri: String) -> (scheme: Scheme, host: String, port: Int, path: String)? {
        let lower = uri.lowercased()
        let scheme: Scheme
        let rest: Substring
        if lower.hasPrefix("http://") {
            scheme = .http
            rest = uri.dropFirst(7)
        } else if lower.hasPrefix("https://") {
            scheme = .https
            rest = uri.dropFirst(8)
        } else {
            return nil
        }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        var path = String(rest[authorityEnd...])
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        guard let (host, port) = parseAuthority(String(authority), defaultPort: scheme == .https ? 443 : 80) else { return nil }
        return (scheme, host, port, path)
    }

    /// `host:port`, `[v6]:port`; `defaultPort` when the port may be left out.
    static func parseAuthority(_ text: String, defaultPort: Int?) -> (String, Int)? {
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { return nil }
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            host = Substring(text)
        }
        let port: Int
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { return nil }
            port = p
        } else {
            guard let defaultPort else { return nil }
            port = defaultPort
        }
        guard !host.isEmpty, host.count <= 253,
              host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" || $0 == ":" }),
              host.unicodeScalars.allSatisfy({ $0.isASCII })
        else { return nil }
        return (String(host), port)
    }
}

/// The first `limit` bytes of a streamed body, and its full size.
struct BodyCapture {
    let limit: Int
    private(set) var bytes: [UInt8] = []
    private(set) var size = 0

    init(limit: Int) { self.limit = limit }

    mutating func append(_ buffer: ByteBuffer) {
        size += buffer.readableBytes
        let room = limit - bytes.count
        if room > 0 {
            bytes.append(contentsOf: buffer.readableBytesView.prefix(room))
        }
    }

    var captured: CapturedBody { CapturedBody(bytes: bytes, size: size) }
}
