import AuthtapModel
import NIOCore
import NIOHTTP1

/// Requests to an origin: checking a head, choosing or opening the upstream connection, relaying the response.
extension ClientHandler {
    func handleHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        recorder.requestStarted()
        // An HTTP/1 connection's request heads reach its timer through ClientRequestTimeoutHandler; a stream's
        // share the connection's timer, which counts the streams in progress.
        if isStream { timer?.requestStarted() }
        if case .forward = mode, let auth = shared.config.proxyAuth {
            guard ProxyCredentials(user: auth.user, password: auth.password).accepts(head.headers) else {
                // Counted, never recorded: whoever can reach a remote listener could fill the database.
                shared.config.counters.countUnauthenticated()
                recorder.discard()
                return respondWithError(
                    .proxyAuthRequired, status: .proxyAuthenticationRequired,
                    detail: "missing or wrong Proxy-Authorization",
                    extraHeaders: [("Proxy-Authenticate", "Basic realm=\"authtap\"")])
            }
            machine.authenticationSucceeded()
        }

        var target: (scheme: Scheme, host: String, port: Int, path: String)?
        if head.method == .CONNECT {
            target = nil
        } else if let origin = fixedOrigin, head.uri.hasPrefix("/") {
            target = (origin.scheme, origin.host, origin.port, origin.prefix + head.uri)
        } else {
            target = RequestTarget.parseAbsolute(head.uri)
        }
        var ex = recorder.record(
            method: head.method.rawValue, scheme: target?.scheme ?? .http, host: target?.host ?? "",
            port: target?.port ?? 0, target: target?.path ?? head.uri)
        ex.httpVersion = head.version.major == 2 ? "HTTP/2" : "HTTP/\(head.version.major).\(head.version.minor)"
        ex.requestHeaders = head.headers.map { HeaderField($0.name, $0.value) }
        ex.clientTLS = clientTLS
        recorder.open(ex)
        heldResponse = nil
        rewrite = rewriter(for: head)

        guard let framing = checkFraming(head) else { return }
        if head.method == .CONNECT { return acceptConnect(head) }
        guard let target else {
            return respondWithError(
                .malformedRequest, status: .badRequest,
                detail: "authtap is a proxy: send absolute-form requests (http://host/path) or use CONNECT")
        }
        if let denial = checkTarget(host: target.host, port: target.port) { return deny(denial, host: target.host) }

        guard let upstreamHead = forwardedHead(head, target: target, framing: framing) else { return }
        let key = poolKey(scheme: target.scheme, host: target.host, port: target.port)
        pending = [.head(upstreamHead)]
        let origin = Origin(scheme: target.scheme, host: target.host, port: target.port, key: key)
        current = (origin, upstreamHead, false)
        let pool = upstreamPool(for: context.eventLoop)
        if let session = pool.session(key) { return openStream(on: session, origin, context: context) }
        if pool.waitForOpening(key, { session in self.openingFinished(session, origin, context: context) }) {
            return machine.upstreamConnecting()
        }
        if let idle = pool.take(key) {
            // Inside channelRead: the body that follows in this read joins the head, and
            // channelReadComplete (or the request's end) flushes both in one write.
            attach(idle, flush: false)
            return
        }
        connect(origin, context: context)
    }

    /// The head sent upstream: its end-to-end fields, the framing authtap decoded and a Host field; `nil` when
    /// removing the hop-by-hop fields would change the framing (the request was answered).
    private func forwardedHead(
        _ head: HTTPRequestHead, target: (scheme: Scheme, host: String, port: Int, path: String),
        framing: RequestFraming.Body
    ) -> HTTPRequestHead? {
        var headers = RequestFraming.forwarded(HopByHop.endToEnd(head.headers), body: framing, method: head.method)
        // RFC 9113 §8.2.3: HTTP/2 clients split Cookie into one field per pair; HTTP/1.1 servers read one field.
        if head.version.major == 2 { HopByHop.joinCookies(&headers) }
        rewriteRequestOrigins(&headers)
        // The framing upstream reads must be the one authtap decoded, whatever hop-by-hop removal took away.
        guard case .success(let sent) = RequestFraming.check(method: head.method, version: .http1_1, headers: headers),
            sent == framing
        else {
            machine.closeAfterResponse()
            respondWithError(
                .malformedRequest, status: .badRequest,
                detail: "ambiguous request framing: removing hop-by-hop fields would change it")
            return nil
        }
        // A reverse listener's clients name authtap in Host; the upstream is told its own name, as mitmproxy's
        // reverse mode does, so that virtual hosts and the URLs the server builds stay its own.
        var reverse = false
        if case .reverse = mode { reverse = true }
        if reverse || !headers.contains(name: "host") {
            let defaultPort = target.scheme == .https ? 443 : 80
            let hostValue = target.host.contains(":") ? "[\(target.host)]" : target.host
            let authority = target.port == defaultPort ? hostValue : "\(hostValue):\(target.port)"
            headers.replaceOrAdd(name: "Host", value: authority)
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: target.path, headers: headers)
    }

    /// The pool key of an origin: a keep-alive connection asks for the same origin each time, so the last one is
    /// kept rather than built again.
    private func poolKey(scheme: Scheme, host: String, port: Int) -> String {
        if let last = lastOrigin, last.port == port, last.scheme == scheme, last.host == host { return last.key }
        let key = "\(scheme.rawValue)://\(host.lowercased()):\(port)"
        lastOrigin = Origin(scheme: scheme, host: host, port: port, key: key)
        return key
    }

    /// The head's size and framing checks: the body's framing, or `nil` when the request was answered.
    private func checkFraming(_ head: HTTPRequestHead) -> RequestFraming.Body? {
        let headerBytes = head.headers.reduce(head.uri.utf8.count) {
            $0 + $1.name.utf8.count + $1.value.utf8.count + 4
        }
        let limit = shared.config.maxHeaderBytes
        if headerBytes > limit {
            machine.closeAfterResponse()
            respondWithError(
                .headersTooLarge, status: .badRequest,
                detail: "request headers are \(headerBytes) bytes; the limit is \(limit)")
            return nil
        }
        switch RequestFraming.check(method: head.method, version: head.version, headers: head.headers) {
        case .success(let body):
            return body
        case .failure(let violation):
            // RFC 9112 §6.3: where this request ends is unknown, so nothing after it on the connection is read.
            machine.closeAfterResponse()
            respondWithError(
                .malformedRequest, status: .badRequest,
                detail: "ambiguous request framing (request smuggling): \(violation.detail)")
            return nil
        }
    }

    func connect(_ target: Origin, context: ChannelHandlerContext) {
        machine.upstreamConnecting()
        resolveChecked(host: target.host, port: target.port, context: context) { addresses in
            self.open(target, addresses: addresses, context: context)
        }
    }

    private func open(_ target: Origin, addresses: [[UInt8]]?, context: ChannelHandlerContext) {
        let pool = upstreamPool(for: context.eventLoop)
        // Only a TLS connection that offers h2 may be shared; the first exchange to open one tells the others.
        let opener = shared.connector.http2 && target.scheme == .https && pool.startOpening(target.key)
        shared.connector.connect(
            scheme: target.scheme, host: target.host, port: target.port, key: target.key,
            addresses: addresses, on: context.eventLoop
        )
        .assumeIsolated().whenComplete { result in
            if opener {
                let session = try? result.get().upgraded
                if let session { pool.add(session) }
                pool.finishOpening(target.key, session: session)
            }
            guard self.machine.isConnecting else {
                if case .success(let handler) = result { handler.channel?.close(promise: nil) }
                return
            }
            switch result {
            case .success(let handler):
                if let session = handler.upgraded {
                    self.upstreamPool(for: context.eventLoop).add(session)
                    return self.openStream(on: session, target, context: context)
                }
                self.attach(handler, flush: true)
            case .failure(let error):
                let failure = FailureClassifier.connect(error, host: target.host, port: target.port)
                self.pending = []
                self.respondWithError(failure.kind, status: .badGateway, detail: failure.detail)
            }
        }
    }

    /// The connection this exchange waited for is open: a stream on it when it is HTTP/2, else one of its own.
    private func openingFinished(_ session: UpstreamSession?, _ origin: Origin, context: ChannelHandlerContext) {
        guard machine.isConnecting, self.context != nil else { return }
        if let session { return openStream(on: session, origin, context: context) }
        connect(origin, context: context)
    }

    /// The exchange goes on a new stream of the origin's HTTP/2 connection; a connection that cannot take one
    /// (it went away meanwhile) gives way to a new connection.
    private func openStream(on session: UpstreamSession, _ origin: Origin, context: ChannelHandlerContext) {
        machine.upstreamConnecting()
        session.openStream(on: context.eventLoop).assumeIsolated().whenComplete { result in
            guard self.machine.isConnecting else {
                if case .success(let handler) = result { handler.channel?.close(promise: nil) }
                return
            }
            switch result {
            case .success(let handler):
                self.attach(handler, flush: true)
            case .failure:
                session.pool?.remove(session)
                self.connect(origin, context: context)
            }
        }
    }

    private func attach(_ handler: UpstreamHandler, flush: Bool) {
        upstream = handler
        handler.delegate = self
        // TLS failed before the connection was handed on: the exchange reports it now.
        guard handler.channel?.isActive == true else { return upstreamFailed(handler.lastError) }
        handler.holdReads = false
        let action = machine.upstreamAttached(flush: flush)
        recorder.upstreamConnected(handler)
        let parts = pending
        pending = []
        for part in parts { handler.write(part, flush: false) }
        if case .sendPending(let flush, let sent) = action {
            if flush { handler.context?.flush() }
            if sent { recorder.requestSent() }
        }
        handler.resumeReads()
        resumeReadsIfPossible()
    }

    // MARK: Upstream events

    func upstreamReceived(_ part: HTTPClientResponsePart) {
        guard let context else { return }
        switch part {
        case .head(let head):
            if head.status.code >= 100 && head.status.code < 200 && head.status != .switchingProtocols {
                let interim = HTTPResponseHead(version: .http1_1, status: head.status, headers: head.headers)
                context.writeAndFlush(wrapOutboundOut(.head(interim)), promise: nil)
                return
            }
            let closeClient = machine.upstreamResponseHead()
            recorder.responseHead(head)
            upstream?.closeAfterResponse = !head.isKeepAlive
            var headers = HopByHop.endToEnd(head.headers, hopByHop: HopByHop.responseFields)
            if closeClient { headers.add(name: "Connection", value: "close") }
            let forwarded = HTTPResponseHead(version: .http1_1, status: head.status, headers: headers)
            if let sent = rewrittenHead(forwarded) { context.write(wrapOutboundOut(.head(sent)), promise: nil) }
        case .body(let buffer):
            recorder.responseBodyPart(buffer)
            if holdResponseBody(buffer, context: context) { return }
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            if !context.channel.isWritable {
                upstream?.holdReads = true
                context.flush()
                // An HTTP/2 stream's flush hands its bytes to the connection and can make it writable again at once,
                // before this handler would hold reads: the writability event has come and gone.
                if context.channel.isWritable { upstream?.resumeReads() }
            }
        case .end(let trailers):
            guard case .finish(let release, let closeClient) = machine.upstreamResponseEnd() else { return }
            // A future only when something waits for the write: most responses keep the connection.
            let done = closeClient ? context.eventLoop.makePromise(of: Void.self) : nil
            releaseHeldResponse(context)
            context.write(wrapOutboundOut(.end(trailers)), promise: done)
            timer?.responseEnded()
            shared.flushAtEndOfTurn(context)
            recorder.responseEnded()
            finishExchange(releaseUpstream: release)
            done?.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func upstreamReadComplete() {
        if let context { shared.flushAtEndOfTurn(context) }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable { resumeReadsIfPossible() }
    }
}
