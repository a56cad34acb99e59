import AuthtapModel
import NIOCore
import NIOHTTP1

/// How exchanges end: recorded after their response, answered by authtap, or cut by a failure on either leg.
extension ClientHandler {
    func upstreamFailed(_ error: (any Error)?) {
        guard recorder.isOpen, let handler = upstream else { return }
        upstream = nil
        handler.delegate = nil
        if handler.isTLS && !handler.handshakeDone { return upstreamHandshakeFailed(handler, error: error) }
        // A pooled connection the server had already closed: a bodiless request that got no byte
        // back is sent again, once, on a new connection (as browsers and HTTP clients do).
        let retry = current.flatMap { current in context.map { (current, $0) } }
        let mayRetry =
            handler.session == nil && recorder.connectionReused && recorder.requestBodySize == 0
            && retry?.0.retried == false
        let reset = FailureClassifier.isReset(error)
        let http2 = handler.session.flatMap {
            FailureClassifier.upstreamStream(error, goAway: $0.goAway, streamID: handler.streamID)
        }
        switch machine.upstreamFailed(mayRetry: mayRetry) {
        case .retry:
            guard let ((origin, head, _), context) = retry else { return }
            current = (origin, head, true)
            recorder.update { $0.connectionReused = false }
            pending = [.head(head), .end(nil)]
            connect(origin, context: context)
        case .cutClient:
            // Too late for a 502: the client already has a status line. Record and cut the client off.
            if let http2 {
                recorder.failed(http2.kind, detail: http2.detail, responseRead: true)
                finishExchange(releaseUpstream: false)
                context?.close(promise: nil)
                return
            }
            let detail =
                reset
                ? "the upstream server reset the connection mid-response"
                : "the upstream server closed the connection mid-response"
            recorder.failed(reset ? .upstreamReset : .upstreamClosed, detail: detail, responseRead: true)
            finishExchange(releaseUpstream: false)
            context?.close(promise: nil)
        case .answerBadGateway:
            if let http2 { return respondWithError(http2.kind, status: .badGateway, detail: http2.detail) }
            if let parserError = error as? HTTPParserError {
                return respondWithError(
                    .upstreamMalformed, status: .badGateway,
                    detail: "the upstream response is not valid HTTP/1.1 (\(parserError))")
            }
            let detail =
                reset
                ? "the upstream server reset the connection before responding"
                : "the upstream server closed the connection before responding"
            respondWithError(reset ? .upstreamReset : .upstreamClosed, status: .badGateway, detail: detail)
        }
    }

    private func upstreamHandshakeFailed(_ handler: UpstreamHandler, error: (any Error)?) {
        recorder.update { $0.upstreamTLS = handler.tlsFacts() }
        let verdict = handler.verification.value.withLock { $0.verdict }
        let reason: TLSFailureReason
        let detail: String
        if case .failed(let verified, let why) = verdict {
            (reason, detail) = (verified, why)
        } else if let alert = handler.facts.alertsFromPeer.first {
            reason = alert.description == 70 ? .protocolVersion : .handshakeAlert
            detail = "the upstream server sent TLS alert \(alert.name) (\(alert.description))"
        } else {
            (reason, detail) =
                error.map { FailureClassifier.tls($0, leg: "upstream server") }
                ?? (.closedDuringHandshake, "the upstream server closed the connection during the TLS handshake")
        }
        recorder.update { $0.tlsFailure = reason }
        respondWithError(.upstreamTLS, status: .badGateway, detail: detail)
    }

    /// Answers the current request from authtap itself; what is left of its body is read and dropped
    /// (or the connection closes when the client asked for that).
    func respondWithError(
        _ kind: ErrorKind, status: HTTPResponseStatus, detail: String,
        extraHeaders: [(String, String)] = [], sentence custom: String? = nil
    ) {
        guard let context else { return }
        let sentence = "\((custom ?? kind.sentence).dropLast()): \(detail).\n"
        var headers = HTTPHeaders([
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", String(sentence.utf8.count)),
            ("X-Authtap-Error", kind.rawValue),
        ])
        if let reason = recorder.tlsFailure { headers.add(name: "X-Authtap-TLS-Failure", value: reason.rawValue) }
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        let answer = machine.errorAnswerStarted()
        if answer.closeAfter { headers.add(name: "Connection", value: "close") }
        recorder.answered(kind, status: status, detail: detail, headers: headers, sentence: sentence)
        let body = context.channel.allocator.buffer(string: sentence)
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let done = context.write(wrapOutboundOut(.end(nil)))
        timer?.responseEnded()
        // Recorded before the flush: on an HTTP/2 stream the flush ends the stream, and its channel with it.
        finishExchange(releaseUpstream: false)
        context.flush()
        if answer.closeAfter {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            machine.errorAnswerWritten(answer)
        }
    }

    func finishExchange(releaseUpstream: Bool) {
        guard let (failed, isConnect) = recorder.finish(upstream: upstream) else { return }
        if let handler = upstream {
            upstream = nil
            handler.delegate = nil
            if releaseUpstream && !failed, let loop = handler.context?.eventLoop {
                upstreamPool(for: loop).put(handler)
            } else {
                handler.channel?.close(promise: nil)
            }
        }
        switch machine.exchangeFinished(failed: failed, isConnect: isConnect) {
        case .awaitRequestEnd:
            // The response is complete but the request is not: keep reading (and recording) its body,
            // without forwarding it, and record the exchange when the request ends.
            recorder.holdUntilRequestEnd()
            resumeReadsIfPossible()
        case .submitAndResumeReads:
            recorder.submitFinished()
            resumeReadsIfPossible()
        case .submitAndReplay:
            recorder.submitFinished()
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
    }

    func recordClientTLSFailure(_ error: (any Error)?, host: String, port: Int) {
        guard machine.clientTLSFailed() else { return }
        var reason = TLSFailureReason.closedDuringHandshake
        var detail = "the client closed the connection during the TLS handshake (it may not trust the authtap CA)"
        if let alert = facts?.alertsFromPeer.first {
            reason = .handshakeAlert
            detail = "the client sent TLS alert \(alert.name) (\(alert.description)): it rejected authtap's certificate"
        } else if let error {
            (reason, detail) = FailureClassifier.tls(error, leg: "client")
            if reason == .handshakeAlert { detail += ": it rejected authtap's certificate" }
        }
        var ex = recorder.record(method: "CONNECT", scheme: .https, host: host, port: port, target: "")
        ex.error = .clientTLS
        ex.tlsFailure = reason
        ex.errorDetail = detail
        ex.clientTLS = facts?.tlsFacts(version: nil, alpn: nil)
        ex.timings.end = 0
        recorder.submitStandalone(ex)
        if tunnel != nil {
            tunnel?.error = .clientTLS
            tunnel?.errorDetail = detail
            tunnel?.ending = "client-tls-failed"
        }
    }
}
