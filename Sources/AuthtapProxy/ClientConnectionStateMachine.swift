import AuthtapModel

/// The client side of one proxied connection as plain values: which request is in progress, whether its body is
/// still arriving, whether its response has started, and whether reads are held. Events go in, an action comes
/// out; `ClientHandler` performs the actions (bytes, upstream connections and records never enter here).
struct ClientConnectionStateMachine {
    enum Mode: Equatable {
        case forward
        case intercepted
    }

    /// One request on the connection, from its head until its exchange is recorded.
    struct Request: Equatable {
        /// Whether the client keeps the connection after this exchange.
        var keepAlive: Bool
        /// Whether the request's end was read.
        var ended = false
        /// Whether a status line went to the client (an error answer is then too late).
        var responseStarted = false
        /// Whether a pipelined request waits until this one is done.
        var queued = false
    }

    enum State: Equatable {
        /// Between requests.
        case idle
        /// A head was read and is being checked; nothing is upstream yet.
        case received(Request)
        /// A CONNECT was accepted: its tunnel opens at the request's end.
        case connectRequested(host: String, port: Int, Request)
        /// Waiting for a target's addresses or an upstream connection (reads are held).
        case connecting(Request)
        /// An upstream connection carries the exchange.
        case forwarding(Request)
        /// Authtap answered, or the response ended first: the rest of the request body is read and dropped.
        case discarding(Request)
        /// The 200 to a CONNECT is being written and the HTTP codecs removed: bytes wait for the tunnel.
        case upgrading
        case closed
    }

    let mode: Mode
    /// Whether requests must carry the proxy credentials (the forward proxy with --proxy-auth).
    let requiresAuthentication: Bool
    private(set) var state = State.idle
    /// Requests seen on the connection (the first one decides "not HTTP inside the tunnel").
    private(set) var requestCount = 0
    /// Whether a request carried the proxy credentials: until then nothing from the connection is recorded.
    private(set) var authenticated = false
    /// Whether the client's TLS handshake completed (intercepted connections).
    private(set) var handshakeDone = false
    /// Whether the client leg's TLS failure (or its non-TLS bytes) was recorded already.
    private(set) var tlsFailureRecorded = false
    /// Whether a `read` is held until the connection may read again.
    private(set) var readPending = false

    init(mode: Mode, requiresAuthentication: Bool) {
        self.mode = mode
        self.requiresAuthentication = requiresAuthentication
    }

    // MARK: Inbound parts

    enum InboundAction: Equatable {
        /// Kept until the tunnel's handlers are in place.
        case bufferForUpgrade
        case drop
        /// A pipelined part: replayed once the current exchange is recorded.
        case queue
        /// Check the head and start its exchange (the handler calls `requestHead(keepAlive:)` first).
        case startRequest
        /// Record the body part and send it upstream (or keep it until the upstream connection is there).
        case forwardBody
        /// Record the body part (for a response that finished first), send nothing.
        case recordDiscardedBody
        /// Send the request's end upstream.
        case forwardEnd
        /// The CONNECT's end: resolve and open (or intercept) the tunnel.
        case openTunnel(host: String, port: Int)
        /// The end of a body being dropped: record a response that waited for it; close unless kept alive.
        case finishDiscarding(close: Bool)
    }

    /// What to do with whatever arrives while requests are not being read, before looking at it (during the
    /// upgrade the decoder hands over the raw bytes that followed the CONNECT).
    var inboundBypass: InboundAction? {
        switch state {
        case .upgrading: return .bufferForUpgrade
        case .closed: return .drop
        default: return nil
        }
    }

    private var exchangeStage: InboundAction? {
        switch state {
        case .upgrading: return .bufferForUpgrade
        case .closed: return .drop
        case .connecting(let request), .forwarding(let request):
            return request.ended ? .queue : nil
        case .idle, .received, .connectRequested, .discarding: return nil
        }
    }

    /// A request head arrived.
    mutating func requestHead(keepAlive: Bool) -> InboundAction {
        if let early = exchangeStage {
            if early == .queue { markQueued() }
            return early
        }
        if case .discarding = state { return .drop }
        requestCount += 1
        state = .received(Request(keepAlive: keepAlive))
        return .startRequest
    }

    mutating func requestBodyPart() -> InboundAction {
        if let early = exchangeStage {
            if early == .queue { markQueued() }
            return early
        }
        if case .discarding = state { return .recordDiscardedBody }
        return .forwardBody
    }

    mutating func requestEnd() -> InboundAction {
        if let early = exchangeStage {
            if early == .queue { markQueued() }
            return early
        }
        switch state {
        case .discarding(let request):
            state = .idle
            return .finishDiscarding(close: !request.keepAlive)
        case .connectRequested(let host, let port, var request):
            request.ended = true
            state = .received(request)
            return .openTunnel(host: host, port: port)
        default:
            updateRequest { $0.ended = true }
            return .forwardEnd
        }
    }

    private mutating func markQueued() { updateRequest { $0.queued = true } }

    /// Changes the request in progress, whatever state carries it.
    private mutating func updateRequest(_ change: (inout Request) -> Void) {
        switch state {
        case .received(var request):
            change(&request)
            state = .received(request)
        case .connectRequested(let host, let port, var request):
            change(&request)
            state = .connectRequested(host: host, port: port, request)
        case .connecting(var request):
            change(&request)
            state = .connecting(request)
        case .forwarding(var request):
            change(&request)
            state = .forwarding(request)
        case .discarding(var request):
            change(&request)
            state = .discarding(request)
        case .idle, .upgrading, .closed:
            break
        }
    }

    var request: Request? {
        switch state {
        case .received(let request), .connectRequested(_, _, let request), .connecting(let request),
            .forwarding(let request), .discarding(let request):
            return request
        case .idle, .upgrading, .closed:
            return nil
        }
    }

    var requestEnded: Bool { request?.ended ?? false }
    var responseStarted: Bool { request?.responseStarted ?? false }
    var keepAlive: Bool { request?.keepAlive ?? false }
    var isConnecting: Bool {
        if case .connecting = state { return true }
        return false
    }

    // MARK: Checking a head

    /// The request carried the proxy credentials.
    mutating func authenticationSucceeded() { authenticated = true }

    /// The head's checks answered it with an error that ends the connection.
    mutating func closeAfterResponse() { updateRequest { $0.keepAlive = false } }

    /// A CONNECT passed its checks: the tunnel waits for the request's end.
    mutating func connectAccepted(host: String, port: Int) {
        guard case .received(let request) = state else { return }
        state = .connectRequested(host: host, port: port, request)
    }

    // MARK: Upstream

    /// Looking up or connecting a target (a new upstream connection, a checked address, a tunnel).
    mutating func upstreamConnecting() {
        guard let request else {
            state = .connecting(Request(keepAlive: false))
            return
        }
        state = .connecting(request)
    }

    enum AttachAction: Equatable {
        /// Write what was kept for the upstream; flush it when `flush`, and note the request as sent when `sent`.
        case sendPending(flush: Bool, sent: Bool)
    }

    /// An upstream connection (new or pooled) is ready for the request.
    mutating func upstreamAttached(flush: Bool) -> AttachAction {
        let request = self.request ?? Request(keepAlive: false)
        state = .forwarding(request)
        return .sendPending(flush: flush || request.ended, sent: request.ended)
    }

    /// A final (non-1xx) response head came: returns whether to tell the client the connection closes after it.
    mutating func upstreamResponseHead() -> Bool {
        updateRequest { $0.responseStarted = true }
        return !keepAlive
    }

    enum ResponseEndAction: Equatable {
        /// Record the exchange; give the upstream connection back to the pool when `releaseUpstream`, and close
        /// the client connection once the end is written when `closeClient`.
        case finish(releaseUpstream: Bool, closeClient: Bool)
    }

    mutating func upstreamResponseEnd() -> ResponseEndAction {
        .finish(releaseUpstream: requestEnded, closeClient: !keepAlive)
    }

    enum UpstreamFailureAction: Equatable {
        /// Send the request again, once, on a new connection.
        case retry
        /// The client has a status line already: record the exchange and close the client.
        case cutClient
        /// Answer the client with a 502.
        case answerBadGateway
    }

    /// The upstream connection failed after its handshake; `mayRetry` says whether the handler could send the
    /// request again (a pooled connection, a bodiless request, not retried yet).
    mutating func upstreamFailed(mayRetry: Bool) -> UpstreamFailureAction {
        if mayRetry, requestEnded, !responseStarted {
            upstreamConnecting()
            return .retry
        }
        return responseStarted ? .cutClient : .answerBadGateway
    }

    // MARK: Endings

    struct ErrorAnswer: Equatable {
        /// Close the client connection once the answer is written.
        var closeAfter: Bool
        /// The request's body is still arriving.
        var bodyPending: Bool
    }

    /// Authtap answers the request itself (before `exchangeFinished`).
    mutating func errorAnswerStarted() -> ErrorAnswer {
        if state == .idle { state = .received(Request(keepAlive: false)) }
        updateRequest { $0.responseStarted = true }
        return ErrorAnswer(closeAfter: !keepAlive, bodyPending: !requestEnded)
    }

    /// The error answer is written and its exchange recorded: the rest of its body is dropped.
    mutating func errorAnswerWritten(_ answer: ErrorAnswer) {
        guard !answer.closeAfter, answer.bodyPending else { return }
        state = .discarding(Request(keepAlive: true, responseStarted: true))
    }

    enum FinishAction: Equatable {
        /// The response is done but the request body is still arriving: keep the record until the request ends.
        case awaitRequestEnd
        /// Record the exchange; reads may resume (the body of an answered request is still being dropped).
        case submitAndResumeReads
        /// Record the exchange; the connection is idle: replay any pipelined request, then resume reads.
        case submitAndReplay
    }

    /// The exchange in progress is complete (`failed`: it carries an error; `isConnect`: a CONNECT's record).
    mutating func exchangeFinished(failed: Bool, isConnect: Bool) -> FinishAction {
        if let request, !request.ended, !failed, !isConnect {
            state = .discarding(request)
            return .awaitRequestEnd
        }
        if case .discarding = state { return .submitAndResumeReads }
        state = .idle
        return .submitAndReplay
    }

    // MARK: Errors and the client leg

    enum ParseFailureAction: Equatable {
        /// Answer 400 with `kind`; `unauthenticated`: count the client and drop its record instead of keeping it.
        case answer(ErrorKind, unauthenticated: Bool)
        /// Not a request's error: the client connection failed.
        case clientFailed
    }

    /// The request decoder failed; `exchangeOpen`: an exchange is being recorded.
    mutating func requestParseFailed(headerOverflow: Bool, exchangeOpen: Bool) -> ParseFailureAction {
        guard !exchangeOpen || !responseStarted else { return .clientFailed }
        let kind: ErrorKind
        if mode == .intercepted, !headerOverflow, requestCount == 0 {
            kind = .nonHTTPInTunnel
        } else {
            kind = headerOverflow ? .headersTooLarge : .malformedRequest
        }
        if state == .idle { state = .received(Request(keepAlive: false)) }
        updateRequest { $0.keepAlive = false }
        return .answer(kind, unauthenticated: mode == .forward && requiresAuthentication && !authenticated)
    }

    /// Whether an error on an intercepted connection came before its TLS handshake completed.
    var failsClientHandshake: Bool { mode == .intercepted && !handshakeDone }

    mutating func tlsHandshakeCompleted() { handshakeDone = true }

    /// Whether the client leg's TLS failure is to be recorded now (once per connection).
    mutating func clientTLSFailed() -> Bool {
        guard mode == .intercepted, !tlsFailureRecorded else { return false }
        tlsFailureRecorded = true
        return true
    }

    /// Whether the connection closed during the client's TLS handshake with nothing recorded about it yet.
    var closedDuringClientHandshake: Bool { mode == .intercepted && !handshakeDone && !tlsFailureRecorded }

    /// The connection closed (after its exchange and late records were recorded).
    mutating func channelInactive() { state = .closed }

    // MARK: The tunnel

    /// The 200 to a CONNECT is being written.
    mutating func upgradeStarted() { state = .upgrading }

    /// The tunnel's handlers are in place; this handler leaves the pipeline.
    mutating func upgradeFinished() { state = .closed }

    // MARK: Reads

    enum ReadAction: Equatable {
        case read
        case hold
        /// Held by the sink's backlog alone: look again shortly (the sink cannot wake event loops).
        case holdAndRecheck
    }

    /// Whether the next request must wait (and the sink's backlog is the only reason to).
    private func holds(writerBackedUp: () -> Bool, upstreamBlocked: () -> Bool) -> ReadAction {
        switch state {
        case .idle, .received, .connectRequested:
            return writerBackedUp() ? .holdAndRecheck : .read
        case .connecting:
            return .hold
        case .forwarding(let request):
            // Reading on while the response comes keeps the socket's read interest registered (two epoll_ctl
            // calls per exchange otherwise); a pipelined request stops reads once one is queued, and so does a
            // sink that is behind (or the next request would start before it catches up).
            let held = (request.ended && (request.queued || writerBackedUp())) || upstreamBlocked()
            return held ? .hold : .read
        case .discarding, .upgrading, .closed:
            return .read
        }
    }

    /// The channel asks to read.
    mutating func readRequested(
        writerBackedUp: @autoclosure () -> Bool,
        upstreamBlocked: @autoclosure () -> Bool
    ) -> ReadAction {
        let action = holds(writerBackedUp: writerBackedUp, upstreamBlocked: upstreamBlocked)
        if action != .read { readPending = true }
        return action
    }

    /// Something that held reads may have cleared: `nil` when no read waits.
    mutating func readsMayResume(
        writerBackedUp: @autoclosure () -> Bool,
        upstreamBlocked: @autoclosure () -> Bool
    ) -> ReadAction? {
        guard readPending else { return nil }
        let action = holds(writerBackedUp: writerBackedUp, upstreamBlocked: upstreamBlocked)
        if action == .read { readPending = false }
        return action
    }
}
