import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Timeouts and the connection cap. Every duration is in seconds; 0 turns that timeout off.
public struct ProxyLimits: Sendable, Equatable {
    /// From accept (or, inside an intercepted tunnel, from the end of the TLS handshake) to a whole request
    /// head; and from a kept-alive connection's first byte of its next request to that request's whole head.
    public var requestHeadTimeout: Double = 30
    /// How long a client connection may wait, between requests, for the first byte of the next one.
    public var clientIdleTimeout: Double = 60
    /// How long an idle upstream connection waits in the pool before authtap closes it.
    public var upstreamIdleTimeout: Double = 30
    /// How long a relayed (not intercepted) CONNECT tunnel may pass no byte either way.
    public var tunnelIdleTimeout: Double = 300
    /// For the client's handshake inside an intercepted tunnel, and for each upstream TLS handshake.
    public var tlsHandshakeTimeout: Double = 10
    /// Client connections open at once; 0 picks `automaticMaxConnections(openFilesLimit:)`.
    public var maxConnections = 0

    public init() {}

    /// Each client connection may hold two descriptors (itself and an upstream connection); a margin is
    /// kept for the database, the CA files and the listening socket.
    public static func automaticMaxConnections(openFilesLimit: Int) -> Int {
        max(16, (openFilesLimit - 64) / 2)
    }

    /// The soft RLIMIT_NOFILE of this process.
    public static func openFilesLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        // RLIM_INFINITY is the largest value: clamped like any other large limit.
        return Int(clamping: min(limit.rlim_cur, 1 << 20))
    }

    /// `maxConnections`, with 0 resolved against this process's descriptor limit.
    public var effectiveMaxConnections: Int {
        maxConnections > 0 ? maxConnections : Self.automaticMaxConnections(openFilesLimit: Self.openFilesLimit())
    }

    /// A duration in seconds as a NIO amount, `nil` when the timeout is off (0, negative or not a number).
    static func amount(_ seconds: Double) -> TimeAmount? {
        guard seconds > 0, seconds.isFinite else { return nil }
        // Clamped before the conversion, which would trap past Int64.
        let nanos = min(seconds, 365 * 24 * 3600) * 1e9
        return .nanoseconds(Int64(nanos.rounded()))
    }
}

/// A connection closed by one of authtap's own limits. Fired through the pipeline before the close, so the
/// handlers that record failures classify it by its code.
struct ProxyTimeout: Error, Equatable, CustomStringConvertible {
    enum Code: Equatable {
        case requestHead
        case clientIdle
        case upstreamIdle
        case tunnelIdle
        case tlsHandshake
    }
    let code: Code
    let seconds: Double

    var description: String {
        let after = Self.seconds(seconds)
        switch code {
        case .requestHead: return "no whole request head within \(after) (--request-head-timeout)"
        case .clientIdle: return "the client connection was idle for \(after) (--client-idle-timeout)"
        case .upstreamIdle: return "the pooled upstream connection was idle for \(after) (--upstream-idle-timeout)"
        case .tunnelIdle: return "the tunnel passed no byte for \(after) (--tunnel-idle-timeout)"
        case .tlsHandshake: return "the TLS handshake did not finish within \(after) (--tls-handshake-timeout)"
        }
    }

    static func seconds(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e9 { return "\(Int(value)) s" }
        return "\(value) s"
    }
}

/// The deadlines of one connection, as a value: events return what the channel's timer should do.
/// The same machine serves the client leg (handshake, request head, idle, tunnel) and an upstream
/// connection (handshake, busy, idle in the pool). The clock is passed in with every event.
struct ConnectionDeadlines: Equatable {
    /// Seconds for each deadline; 0 (or less) means none.
    struct Timeouts: Equatable {
        var head: Double = 0
        var idle: Double = 0
        var tunnelIdle: Double = 0
        var handshake: Double = 0

        /// The client leg's timeouts.
        static func client(_ limits: ProxyLimits) -> Timeouts {
            Timeouts(
                head: limits.requestHeadTimeout, idle: limits.clientIdleTimeout,
                tunnelIdle: limits.tunnelIdleTimeout, handshake: limits.tlsHandshakeTimeout)
        }

        /// An upstream connection's: no request head to wait for; idle means idle in the pool.
        static func upstream(_ limits: ProxyLimits) -> Timeouts {
            Timeouts(idle: limits.upstreamIdleTimeout, handshake: limits.tlsHandshakeTimeout)
        }
    }

    private static func after(_ seconds: Double, _ now: NIODeadline) -> NIODeadline? {
        ProxyLimits.amount(seconds).map { now + $0 }
    }

    enum Phase: Equatable {
        /// Waiting for the TLS handshake to finish.
        case handshake(deadline: NIODeadline?)
        /// Waiting for the rest of a request head.
        case head(deadline: NIODeadline?)
        /// Requests in progress: the connection is not authtap's to time out.
        case busy
        /// Between exchanges: waiting for the next request's first byte (or, upstream, for a new exchange).
        case idle(deadline: NIODeadline?)
        /// A relayed tunnel: idle when no byte passed since `lastActivity`.
        case tunnel(lastActivity: NIODeadline)
        /// Handed to other handlers (an upgraded CONNECT) or closed: no deadline any more.
        case done
    }

    enum Action: Equatable {
        /// Keep (or set) one timer firing at this time.
        case arm(NIODeadline)
        /// No timer is needed.
        case disarm
        /// Leave the timer as it is (one set earlier than needed looks again when it fires).
        case keep
        /// Close the connection for this reason.
        case close(ProxyTimeout)
    }

    /// Whether this is an upstream connection (its idle time-out names the pool).
    let isUpstream: Bool
    let timeouts: Timeouts
    private(set) var phase: Phase
    /// Requests started whose final response has not yet ended.
    private(set) var outstanding = 0

    private init(isUpstream: Bool, timeouts: Timeouts, phase: Phase) {
        self.isUpstream = isUpstream
        self.timeouts = timeouts
        self.phase = phase
    }

    /// A client connection just accepted: its first request head is due.
    static func client(_ timeouts: Timeouts, now: NIODeadline) -> (Self, Action) {
        var machine = Self(isUpstream: false, timeouts: timeouts, phase: .done)
        machine.phase = .head(deadline: Self.after(timeouts.head, now))
        return (machine, machine.action)
    }

    /// An upstream connection just connected: its handshake (TLS) is due, or it is about to carry a request.
    static func upstream(_ timeouts: Timeouts, tls: Bool, now: NIODeadline) -> (Self, Action) {
        let phase: Phase = tls ? .handshake(deadline: Self.after(timeouts.handshake, now)) : .busy
        let machine = Self(isUpstream: true, timeouts: timeouts, phase: phase)
        return (machine, machine.action)
    }

    /// How long the timer may wait before looking at the phase again: a quarter of the phase's timeout,
    /// between 10 ms and 15 s. Events only update the value; the timer is moved only when an event sets a
    /// deadline earlier than its next look, so keep-alive traffic costs no heap operation per request.
    var tick: TimeAmount {
        let seconds: Double
        switch phase {
        case .handshake: seconds = timeouts.handshake
        case .head: seconds = timeouts.head
        case .idle: seconds = timeouts.idle
        case .tunnel: seconds = timeouts.tunnelIdle
        case .busy, .done: seconds = 60
        }
        return ProxyLimits.amount(min(15, max(0.01, seconds / 4))) ?? .seconds(15)
    }

    /// The timer this phase needs.
    var action: Action {
        switch phase {
        case .handshake(let d), .head(let d), .idle(let d): return d.map(Action.arm) ?? .disarm
        case .tunnel(let last): return Self.after(timeouts.tunnelIdle, last).map(Action.arm) ?? .disarm
        case .busy, .done: return .disarm
        }
    }

    /// A CONNECT was upgraded to an intercepted tunnel: the client's TLS handshake is due.
    mutating func interceptedTunnelStarted(now: NIODeadline) -> Action {
        outstanding = 0
        phase = .handshake(deadline: Self.after(timeouts.handshake, now))
        return action
    }

    /// A CONNECT was upgraded to a relayed tunnel: from now on only silence ends it.
    mutating func relayedTunnelStarted(now: NIODeadline) -> Action {
        outstanding = 0
        phase = .tunnel(lastActivity: now)
        return action
    }

    /// The TLS handshake finished: a client's first request head is due; an upstream carries its request.
    mutating func handshakeCompleted(now: NIODeadline) -> Action {
        guard case .handshake = phase else { return action }
        if isUpstream {
            phase = outstanding > 0 ? .busy : .idle(deadline: Self.after(timeouts.idle, now))
        } else {
            phase = .head(deadline: Self.after(timeouts.head, now))
        }
        return action
    }

    /// Bytes came from the peer. Only an idle client connection and a tunnel care: the next request
    /// has begun, or the tunnel is alive. The timer is not moved for a tunnel (it looks again when it fires).
    mutating func bytesReceived(now: NIODeadline) -> Action {
        switch phase {
        case .idle where !isUpstream:
            phase = .head(deadline: Self.after(timeouts.head, now))
            return action
        case .tunnel:
            phase = .tunnel(lastActivity: now)
            return .keep
        default:
            return .keep
        }
    }

    /// Bytes went to the peer: keeps a tunnel alive.
    mutating func bytesSent(now: NIODeadline) -> Action {
        if case .tunnel = phase { phase = .tunnel(lastActivity: now) }
        return .keep
    }

    /// A request began: a whole head from the client, or a request written to an upstream connection.
    mutating func requestStarted(now: NIODeadline) -> Action {
        outstanding += 1
        switch phase {
        case .head, .idle, .busy: phase = .busy
        case .handshake, .tunnel, .done: break
        }
        return action
    }

    /// A final response ended. With no request left in progress the connection is idle.
    mutating func responseEnded(now: NIODeadline) -> Action {
        outstanding = max(0, outstanding - 1)
        guard case .busy = phase, outstanding == 0 else { return action }
        phase = .idle(deadline: Self.after(timeouts.idle, now))
        return action
    }

    /// The connection closed or was handed on: nothing more to time.
    mutating func finished() -> Action {
        phase = .done
        return .disarm
    }

    /// The timer fired: close if the phase's deadline passed, or look again at the phase's deadline.
    mutating func timerFired(now: NIODeadline) -> Action {
        let next = action
        guard case .arm(let deadline) = next, deadline <= now else { return next }
        let reason: ProxyTimeout
        switch phase {
        case .handshake: reason = ProxyTimeout(code: .tlsHandshake, seconds: timeouts.handshake)
        case .head: reason = ProxyTimeout(code: .requestHead, seconds: timeouts.head)
        case .idle:
            reason = ProxyTimeout(code: isUpstream ? .upstreamIdle : .clientIdle, seconds: timeouts.idle)
        case .tunnel: reason = ProxyTimeout(code: .tunnelIdle, seconds: timeouts.tunnelIdle)
        case .busy, .done: return next
        }
        phase = .done
        return .close(reason)
    }
}

/// Accepting, as a value: how many client connections are open, whether accepting is paused at the cap,
/// and the back-off and log throttle for accept errors such as EMFILE. The server channel's handler
/// performs what it answers.
struct AcceptGovernor {
    enum Decision: Equatable {
        /// Ask the listening socket for the next connection now.
        case read
        /// Hold the read: at the cap, or backing off after an error (then `resumeAt` says when).
        case hold(resumeAt: NIODeadline?)
    }

    let maxConnections: Int
    let logInterval: TimeAmount
    let initialBackoff: TimeAmount
    let maxBackoff: TimeAmount
    private(set) var open = 0
    private(set) var backoffUntil: NIODeadline?
    private var backoff: TimeAmount?
    private var lastLogAt: NIODeadline?
    /// Accept errors since the last logged line.
    private(set) var unlogged = 0
    /// Reads asked for while held: one is owed when accepting resumes.
    private(set) var readOwed = false

    init(
        maxConnections: Int, logInterval: TimeAmount = .seconds(10), initialBackoff: TimeAmount = .milliseconds(50),
        maxBackoff: TimeAmount = .seconds(1)
    ) {
        self.maxConnections = max(1, maxConnections)
        self.logInterval = logInterval
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
    }

    var atCap: Bool { open >= maxConnections }

    /// The listening channel asks to read (accept).
    mutating func readRequested(now: NIODeadline) -> Decision {
        if atCap {
            readOwed = true
            return .hold(resumeAt: nil)
        }
        if let until = backoffUntil, now < until {
            readOwed = true
            return .hold(resumeAt: until)
        }
        backoffUntil = nil
        readOwed = false
        return .read
    }

    /// A connection was accepted; a clean accept ends the error back-off's growth.
    mutating func accepted() {
        open += 1
        backoff = nil
    }

    /// A connection closed. Answers `.read` when a held read may now go ahead.
    mutating func closed(now: NIODeadline) -> Decision? {
        open = max(0, open - 1)
        guard readOwed else { return nil }
        let decision = readRequested(now: now)
        return decision == .read ? .read : nil
    }

    /// accept(2) failed with a resource error: back off (doubling up to `maxBackoff`), and say whether a
    /// line is due (the first error, then at most one per `logInterval`, counting the ones in between).
    mutating func acceptFailed(now: NIODeadline) -> (resumeAt: NIODeadline, log: Int?) {
        let next = backoff.map { min($0 * 2, maxBackoff) } ?? initialBackoff
        backoff = next
        backoffUntil = now + next
        // The failed accept left its connection queued: a read is owed once the back-off ends.
        readOwed = true
        unlogged += 1
        if let last = lastLogAt, now - last < logInterval { return (now + next, nil) }
        lastLogAt = now
        let count = unlogged
        unlogged = 0
        return (now + next, count)
    }

    /// The errors worth backing off for: the process or the system is out of descriptors or buffers.
    static func isResourceExhaustion(errno code: CInt) -> Bool {
        code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM
    }
}
