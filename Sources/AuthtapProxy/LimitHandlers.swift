import Foundation
import NIOCore
import NIOHTTP1
import NIOTLS

/// Runs one `ConnectionDeadlines` on a channel's event loop: one scheduled look at a time, at the next
/// deadline or within the machine's tick, so events only update the value and never move a timer.
final class DeadlineClock {
    private(set) var machine: ConnectionDeadlines
    private var scheduled: Scheduled<Void>?
    private var scheduledAt: NIODeadline?

    init(_ machine: ConnectionDeadlines) {
        self.machine = machine
    }

    /// Applies an event and makes sure a look is scheduled if the phase has a deadline.
    func update(_ context: ChannelHandlerContext, _ event: (inout ConnectionDeadlines) -> ConnectionDeadlines.Action) {
        _ = event(&machine)
        ensureScheduled(context)
    }

    func ensureScheduled(_ context: ChannelHandlerContext) {
        guard case .arm(let deadline) = machine.action else { return }
        if scheduled != nil, let at = scheduledAt, at <= deadline { return }
        scheduled?.cancel()
        let at = min(deadline, context.eventLoop.now + machine.tick)
        scheduledAt = at
        scheduled = context.eventLoop.assumeIsolated().scheduleTask(deadline: at) { [weak self] in
            self?.fired(context)
        }
    }

    private func fired(_ context: ChannelHandlerContext) {
        scheduled = nil
        scheduledAt = nil
        switch machine.timerFired(now: context.eventLoop.now) {
        case .close(let reason):
            // Handlers after this one record the failure (a stalled handshake) before the close.
            context.fireErrorCaught(reason)
            context.close(promise: nil)
        case .arm:
            ensureScheduled(context)
        case .disarm, .keep:
            break
        }
    }

    /// The connection closed or was handed on.
    func stop() {
        _ = machine.finished()
        scheduled?.cancel()
        scheduled = nil
        scheduledAt = nil
    }
}

/// At the network end of a client connection: times the request head, the idle wait between requests,
/// the client's TLS handshake inside an intercepted tunnel and a relayed tunnel's silence. Sees raw bytes both
/// ways; `ClientRequestTimeoutHandler`, after the HTTP codecs, tells it when a request head starts, and
/// `ClientHandler` when a response ends.
final class ClientTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Start {
        case accepted
        case interceptedTunnel
        case relayedTunnel
    }

    let timeouts: ConnectionDeadlines.Timeouts
    private let start: Start
    private var clock: DeadlineClock?
    private var context: ChannelHandlerContext?

    init(timeouts: ConnectionDeadlines.Timeouts, start: Start = .accepted) {
        self.timeouts = timeouts
        self.start = start
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let now = context.eventLoop.now
        var (machine, _) = ConnectionDeadlines.client(timeouts, now: now)
        switch start {
        case .accepted: break
        case .interceptedTunnel: _ = machine.interceptedTunnelStarted(now: now)
        case .relayedTunnel: _ = machine.relayedTunnelStarted(now: now)
        }
        let clock = DeadlineClock(machine)
        self.clock = clock
        if context.channel.isActive { clock.ensureScheduled(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        clock?.ensureScheduled(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        clock?.stop()
        clock = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        clock?.stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        clock?.update(context) { $0.bytesReceived(now: context.eventLoop.now) }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .tunnel = clock?.machine.phase { clock?.update(context) { $0.bytesSent(now: context.eventLoop.now) } }
        context.write(data, promise: promise)
    }

    func requestStarted() {
        guard let context else { return }
        clock?.update(context) { $0.requestStarted(now: context.eventLoop.now) }
    }

    func responseEnded() {
        guard let context else { return }
        clock?.update(context) { $0.responseEnded(now: context.eventLoop.now) }
    }

    func handshakeCompleted() {
        guard let context else { return }
        clock?.update(context) { $0.handshakeCompleted(now: context.eventLoop.now) }
    }

    /// Called while a CONNECT's tunnel handlers are installed (after they were added at the pipeline's front):
    /// replaces this connection's timing handlers with ones for the tunnel, again at the network end.
    /// `handler` is the intercepted tunnel's `ClientHandler`, whose requests are then timed as before.
    static func tunnelStarted(
        _ pipeline: ChannelPipeline.SynchronousOperations, intercepted: Bool,
        before handler: ClientHandler? = nil
    ) throws {
        guard let old = try? pipeline.handler(type: ClientTimeoutHandler.self) else { return }
        if let oldRequests = try? pipeline.handler(type: ClientRequestTimeoutHandler.self) {
            pipeline.removeHandler(oldRequests, promise: nil)
        }
        pipeline.removeHandler(old, promise: nil)
        let start: Start = intercepted ? .interceptedTunnel : .relayedTunnel
        let fresh = ClientTimeoutHandler(timeouts: old.timeouts, start: start)
        try pipeline.addHandler(fresh, position: .first)
        if intercepted, let handler {
            try pipeline.addHandler(ClientRequestTimeoutHandler(timer: fresh), position: .before(handler))
            handler.timer = fresh
        }
    }
}

/// Between the HTTP codecs and `ClientHandler`: a whole request head and the end of the client's TLS
/// handshake, reported to the connection's `ClientTimeoutHandler`. Inbound only: `ClientHandler` tells the timer
/// itself when it writes a response's end, so the response parts do not pass through another handler and another
/// cast on every exchange.
final class ClientRequestTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private let timer: ClientTimeoutHandler
    private var connectPending = false

    init(timer: ClientTimeoutHandler) {
        self.timer = timer
    }

    /// A CONNECT's request has ended: the decoder makes no more HTTP parts on this connection, and what it
    /// hands on when it is removed (on the upgrade, or as the connection closes after a refused CONNECT) is raw
    /// bytes, which must pass through untouched.
    private var connectEnded = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if connectEnded {
            context.fireChannelRead(data)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            connectPending = head.method == .CONNECT
            timer.requestStarted()
        case .end where connectPending:
            connectEnded = true
        default:
            break
        }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event { timer.handshakeCompleted() }
        context.fireUserInboundEventTriggered(event)
    }
}

/// On an upstream connection, between the HTTP codecs and `UpstreamHandler`: times the TLS handshake and
/// the wait in the pool between exchanges. A stalled handshake reaches `UpstreamHandler` as a `ProxyTimeout`
/// error, so the exchange waiting on it is answered 502 and recorded with that reason. Inbound only: the
/// request's start is told by `UpstreamHandler` (`requestStarted`), so the parts it writes do not pass through
/// another handler and another cast on every exchange.
final class UpstreamTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias InboundOut = HTTPClientResponsePart

    private let timeouts: ConnectionDeadlines.Timeouts
    private let tls: Bool
    private var clock: DeadlineClock?
    private var context: ChannelHandlerContext?

    init(timeouts: ConnectionDeadlines.Timeouts, tls: Bool) {
        self.timeouts = timeouts
        self.tls = tls
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let clock = DeadlineClock(ConnectionDeadlines.upstream(timeouts, tls: tls, now: context.eventLoop.now).0)
        self.clock = clock
        if context.channel.isActive { clock.ensureScheduled(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        clock?.ensureScheduled(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        clock?.stop()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        clock?.stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = unwrapInboundIn(data) { clock?.update(context) { $0.responseEnded(now: context.eventLoop.now) } }
        context.fireChannelRead(data)
    }

    /// A request head is being written on this connection.
    func requestStarted() {
        guard let context else { return }
        clock?.update(context) { $0.requestStarted(now: context.eventLoop.now) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            clock?.update(context) { $0.handshakeCompleted(now: context.eventLoop.now) }
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// On the listening channel: counts the client connections, holds accepting at `--max-connections` and
/// backs off when accept(2) fails for want of descriptors or memory (NIO's ServerBootstrap only reports
/// those errors and tries again at once). Logs at most one line per interval.
final class AcceptGate: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = any Channel

    private var governor: AcceptGovernor
    private let log: @Sendable (String) -> Void
    private var context: ChannelHandlerContext?
    private var resume: Scheduled<Void>?
    private var capLoggedAt: NIODeadline?

    init(governor: AcceptGovernor, log: @escaping @Sendable (String) -> Void) {
        self.governor = governor
        self.log = log
    }

    var openConnections: Int { governor.open }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        resume?.cancel()
        resume = nil
    }

    func read(context: ChannelHandlerContext) {
        switch governor.readRequested(now: context.eventLoop.now) {
        case .read:
            if paused {
                paused = false
                try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
            }
            context.read()
        case .hold(let resumeAt):
            pause(context)
            if let resumeAt { scheduleResume(at: resumeAt, context: context) } else { noteCap(context) }
        }
    }

    /// Holding the read alone is not enough: after a failed accept NIO keeps the listening socket registered for
    /// readability (the connection is still queued), and epoll would report it again at once. Turning autoRead off
    /// takes it out of the poll set until accepting resumes.
    private var paused = false

    private func pause(_ context: ChannelHandlerContext) {
        guard !paused else { return }
        paused = true
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        governor.accepted()
        let gate = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loop = context.eventLoop
        child.closeFuture.whenComplete { _ in
            loop.execute { gate.value.connectionClosed() }
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let io = error as? IOError else { return context.fireErrorCaught(error) }
        if io.errnoCode == ECONNABORTED { return }
        guard AcceptGovernor.isResourceExhaustion(errno: io.errnoCode) else { return context.fireErrorCaught(error) }
        let (resumeAt, count) = governor.acceptFailed(now: context.eventLoop.now)
        pause(context)
        if let count {
            let more = count > 1 ? " (\(count) failed accepts since the last line)" : ""
            log(
                "authtap: cannot accept a connection: \(Self.errnoName(io.errnoCode)); accepting backs off for up "
                    + "to 1 s at a time\(more). Raise the open-files limit (ulimit -n) or lower --max-connections "
                    + "(\(governor.maxConnections)); \(governor.open) connections are open")
        }
        scheduleResume(at: resumeAt, context: context)
    }

    private func connectionClosed() {
        guard let context else { return }
        if governor.closed(now: context.eventLoop.now) == .read { read(context: context) }
    }

    private func scheduleResume(at deadline: NIODeadline, context: ChannelHandlerContext) {
        guard resume == nil else { return }
        resume = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self, let context = self.context else { return }
            self.resume = nil
            guard self.governor.readOwed else { return }
            // A later error may have lengthened the back-off: the read is then held again until its end.
            self.read(context: context)
        }
    }

    private func noteCap(_ context: ChannelHandlerContext) {
        let now = context.eventLoop.now
        if let last = capLoggedAt, now - last < governor.logInterval { return }
        capLoggedAt = now
        log(
            "authtap: \(governor.open) client connections are open (--max-connections \(governor.maxConnections)): "
                + "accepting waits until some close")
    }

    static func errnoName(_ code: CInt) -> String {
        switch code {
        case EMFILE: return "too many open files in this process (EMFILE)"
        case ENFILE: return "too many open files in the system (ENFILE)"
        case ENOBUFS: return "no buffer space (ENOBUFS)"
        case ENOMEM: return "out of memory (ENOMEM)"
        default: return "errno \(code)"
        }
    }
}
