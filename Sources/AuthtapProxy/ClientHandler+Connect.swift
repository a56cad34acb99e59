import AuthtapModel
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// CONNECT: the target checks, the plain tunnel, the upgrade to an intercepted (MITM) tunnel, and what happens
/// when the bytes inside one are not TLS.
extension ClientHandler {
    /// A CONNECT head that passed the size and framing checks.
    func acceptConnect(_ head: HTTPRequestHead) {
        guard case .forward = mode else {
            return respondWithError(
                .malformedRequest, status: .badRequest,
                detail: "CONNECT inside an intercepted tunnel")
        }
        guard let (host, port) = RequestTarget.parseAuthority(head.uri, defaultPort: nil) else {
            recorder.update { $0.target = head.uri }
            return respondWithError(
                .badConnectTarget, status: .badRequest,
                detail: "CONNECT target \(head.uri.prefix(200)) is not host:port")
        }
        recorder.update { ex in
            ex.scheme = .https
            ex.host = host
            ex.port = port
            ex.target = ""
        }
        if let denial = checkTarget(host: host, port: port) { return deny(denial, host: host) }
        // The upgrade starts at the CONNECT's `.end`: after it, the decoder only forwards raw bytes.
        machine.connectAccepted(host: host, port: port)
    }

    func handleConnect(host: String, port: Int, context: ChannelHandlerContext) {
        // Checked before the 200: an intercepted tunnel's requests are checked again when they connect.
        resolveChecked(host: host, port: port, context: context) { addresses in
            self.openTunnel(host: host, port: port, addresses: addresses, context: context)
        }
    }

    private func openTunnel(host: String, port: Int, addresses: [[UInt8]]?, context: ChannelHandlerContext) {
        guard !shared.config.shouldIntercept(host: host, port: port) else {
            return intercept(host: host, port: port, context: context)
        }
        machine.upstreamConnecting()
        let record = Tunnel(
            connectionID: connectionID, clientAddress: clientAddress, host: host, port: port,
            intercepted: false, start: Date())
        let stats = TunnelStats(tunnel: record, writer: shared.writer)
        let connected: EventLoopFuture<any Channel>
        if let bootstrap = ClientBootstrap(validatingGroup: context.eventLoop) {
            connected =
                bootstrap
                .resolver(addresses.map { CheckedAddressResolver(addresses: $0, port: port, loop: context.eventLoop) })
                .connectTimeout(shared.connector.connectTimeout)
                .connect(host: host, port: port)
        } else {
            // A loop that cannot open sockets (an embedded one in tests) fails the tunnel instead of trapping.
            connected = context.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        connected.assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                let failure = FailureClassifier.connect(error, host: host, port: port)
                stats.tunnel.error = failure.kind
                stats.tunnel.errorDetail = failure.detail
                stats.tunnel.ending = "connect-failed"
                stats.submit()
                self.respondWithError(failure.kind, status: .badGateway, detail: failure.detail)
            case .success(let peer):
                // A relayed CONNECT is not an exchange of its own: its tunnel row records it.
                self.recorder.discard()
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

    private func intercept(host: String, port: Int, context: ChannelHandlerContext) {
        // An intercepted CONNECT is not an exchange of its own: its tunnel row records it.
        recorder.discard()
        let tunnel = Tunnel(
            connectionID: connectionID, clientAddress: clientAddress, host: host, port: port,
            intercepted: true, start: Date())
        upgrade(context: context) { pipeline in
            let facts = ConnectionFacts()
            let (decoder, encoder) = self.shared.requestCodecs(leftOverBytes: .dropBytes)
            let handler = ClientHandler(
                shared: self.shared, mode: .intercepted(host: host, port: port),
                connectionID: self.connectionID, clientAddress: self.clientAddress,
                codecs: (decoder, encoder), facts: facts, tunnel: tunnel)
            let gate = ClientHelloGate(connectHost: host, contexts: self.shared.contexts, facts: facts) { ctx, bytes in
                handler.rejectNonTLS(bytes, context: ctx)
            }
            try pipeline.addHandlers([TLSObserver(facts: facts), gate, decoder, encoder, handler], position: .first)
            try ClientTimeoutHandler.tunnelStarted(pipeline, intercepted: true, before: handler)
        }
    }

    /// Answers `200 Connection established`, removes the HTTP codecs and hands the raw
    /// connection (and any bytes that arrived early) to the handlers `install` adds.
    private func upgrade(
        context: ChannelHandlerContext,
        install: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void
    ) {
        machine.upgradeStarted()
        let head = HTTPResponseHead(
            version: .http1_1,
            status: .custom(code: 200, reasonPhrase: "Connection established"),
            headers: HTTPHeaders([("Content-Length", "0")]))
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        guard let codecs else { return context.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().flatMap {
            context.pipeline.syncOperations.removeHandler(codecs.decoder)
        }.flatMap {
            context.pipeline.syncOperations.removeHandler(codecs.encoder)
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
            self.machine.upgradeFinished()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            for data in buffered { context.pipeline.fireChannelRead(data) }
            context.channel.read()
        }
    }

    /// Bytes inside an intercepted tunnel that are not TLS: record, answer 400 if it looks like HTTP, close.
    func rejectNonTLS(_ bytes: [UInt8], context: ChannelHandlerContext) {
        guard let origin = fixedOrigin, machine.clientTLSFailed() else { return }
        var ex = recorder.record(method: "CONNECT", scheme: .https, host: origin.host, port: origin.port, target: "")
        ex.error = .nonTLSInTunnel
        let first = String(bytes.first ?? 0, radix: 16)
        ex.errorDetail = "the client sent \(bytes.count) bytes that are not a TLS ClientHello (first byte 0x\(first))"
        ex.timings.end = 0
        recorder.submitStandalone(ex)
        tunnel?.error = .nonTLSInTunnel
        tunnel?.ending = "error"
        let sentence = ErrorKind.nonTLSInTunnel.sentence + "\n"
        let looksHTTP = bytes.first.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") } ?? false
        guard looksHTTP else { return context.close(promise: nil) }
        let response =
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(sentence.utf8.count)\r\nX-Authtap-Error: \(ErrorKind.nonTLSInTunnel.rawValue)\r\n"
            + "Connection: close\r\n\r\n\(sentence)"
        // Written below the TLS layer: the gate sits at the network end.
        let written = context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: response)))
        written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    // MARK: Target checks

    /// The target checks that need no DNS (and the only ones on a loopback-only listener).
    func checkTarget(host: String, port: Int) -> TargetPolicy.Denial? {
        let listenPort = shared.listenPort.load(ordering: .relaxed)
        return shared.config.targetPolicy.check(
            host: host, port: port, listenPort: listenPort,
            listenAddress: listenAddress)
    }

    private func checkResolved(_ addresses: [[UInt8]], port: Int) -> TargetPolicy.Denial? {
        let listenPort = shared.listenPort.load(ordering: .relaxed)
        return shared.config.targetPolicy.check(
            resolved: addresses, port: port, listenPort: listenPort,
            listenAddress: listenAddress)
    }

    func deny(_ denial: TargetPolicy.Denial, host: String) {
        let detail = TargetPolicy.describe(denial, host: host)
        if denial == .selfLoop { return respondWithError(.forbiddenTarget, status: .badRequest, detail: detail) }
        respondWithError(
            .forbiddenTarget, status: .forbidden, detail: detail,
            sentence: "authtap's target policy does not allow this destination.")
    }

    /// With the policy enforced: resolves `host` off the event loop and checks every address, then hands the
    /// checked addresses to `proceed` (a denial or a failed lookup has been answered already).
    func resolveChecked(
        host: String, port: Int, context: ChannelHandlerContext,
        proceed: @escaping ([[UInt8]]?) -> Void
    ) {
        guard shared.config.targetPolicy.enforced else { return proceed(nil) }
        machine.upstreamConnecting()
        TargetResolution.resolve(host: host, on: context.eventLoop).assumeIsolated().whenComplete { result in
            guard self.machine.isConnecting, self.recorder.isOpen else { return }
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
}
