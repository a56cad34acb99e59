import NIOCore
import Testing

@testable import AuthtapProxy

/// Every transition of the per-connection deadline machine, with the clock passed in: no sockets, no waiting.
@Suite struct ConnectionDeadlinesTests {
    typealias Machine = ConnectionDeadlines
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    static func at(_ seconds: Double) -> NIODeadline { t0 + .milliseconds(Int64((seconds * 1000).rounded())) }

    static let client = Machine.Timeouts(head: 30, idle: 60, tunnelIdle: 300, handshake: 10)
    static let upstream = Machine.Timeouts(idle: 20, handshake: 10)

    @Test func aNewClientConnectionMustSendAWholeHeadInTime() {
        var (m, first) = Machine.client(Self.client, now: Self.at(0))
        #expect(first == .arm(Self.at(30)))
        // Half a head arrives: bytes alone do not move the head deadline (slowloris).
        _ = m.bytesReceived(now: Self.at(29))
        #expect(m.timerFired(now: Self.at(29.9)) == .arm(Self.at(30)))
        #expect(m.timerFired(now: Self.at(30)) == .close(ProxyTimeout(code: .requestHead, seconds: 30)))
        #expect(m.phase == .done)
    }

    @Test func keepAliveIsIdleUntilTheNextRequestStartsThenTheHeadIsDue() {
        var (m, _) = Machine.client(Self.client, now: Self.at(0))
        #expect(m.requestStarted(now: Self.at(1)) == .disarm)
        #expect(m.timerFired(now: Self.at(40)) == .disarm)  // a slow upstream is not the client's fault
        #expect(m.responseEnded(now: Self.at(50)) == .arm(Self.at(110)))
        #expect(m.timerFired(now: Self.at(100)) == .arm(Self.at(110)))
        // The next request's first byte: its head is due 30 s later, whatever the idle deadline said.
        #expect(m.bytesReceived(now: Self.at(105)) == .arm(Self.at(135)))
        #expect(m.timerFired(now: Self.at(134)) == .arm(Self.at(135)))
        #expect(m.timerFired(now: Self.at(135)) == .close(ProxyTimeout(code: .requestHead, seconds: 30)))
    }

    @Test func anIdleClientIsClosedAfterTheIdleTimeout() {
        var (m, _) = Machine.client(Self.client, now: Self.at(0))
        _ = m.requestStarted(now: Self.at(0))
        _ = m.responseEnded(now: Self.at(1))
        #expect(m.timerFired(now: Self.at(61)) == .close(ProxyTimeout(code: .clientIdle, seconds: 60)))
    }

    @Test func pipelinedRequestsKeepTheConnectionBusyUntilTheLastResponseEnds() {
        var (m, _) = Machine.client(Self.client, now: Self.at(0))
        _ = m.requestStarted(now: Self.at(1))
        _ = m.requestStarted(now: Self.at(1))
        #expect(m.responseEnded(now: Self.at(2)) == .disarm)
        #expect(m.phase == .busy)
        #expect(m.responseEnded(now: Self.at(3)) == .arm(Self.at(63)))
        // A stray end (never more ends than requests) does not go below zero.
        _ = m.responseEnded(now: Self.at(4))
        #expect(m.outstanding == 0)
    }

    @Test func anInterceptedTunnelMustFinishItsHandshakeThenSendAHead() {
        var (m, _) = Machine.client(Self.client, now: Self.at(0))
        _ = m.requestStarted(now: Self.at(0))  // the CONNECT
        #expect(m.interceptedTunnelStarted(now: Self.at(1)) == .arm(Self.at(11)))
        #expect(m.handshakeCompleted(now: Self.at(2)) == .arm(Self.at(32)))
        #expect(m.requestStarted(now: Self.at(3)) == .disarm)
        #expect(m.outstanding == 1)
    }

    @Test func aStalledClientHandshakeIsClosedWithTheHandshakeReason() {
        var (m, _) = Machine.client(Self.client, now: Self.at(0))
        _ = m.interceptedTunnelStarted(now: Self.at(0))
        _ = m.bytesReceived(now: Self.at(5))  // part of a ClientHello
        #expect(m.timerFired(now: Self.at(10)) == .close(ProxyTimeout(code: .tlsHandshake, seconds: 10)))
    }

    @Test func aRelayedTunnelLivesWhileBytesPassEitherWay() {
        var (m, _) = Machine.client(Self.client, now: Self.at(0))
        #expect(m.relayedTunnelStarted(now: Self.at(0)) == .arm(Self.at(300)))
        #expect(m.bytesReceived(now: Self.at(100)) == .keep)
        #expect(m.bytesSent(now: Self.at(250)) == .keep)
        #expect(m.timerFired(now: Self.at(300)) == .arm(Self.at(550)))
        #expect(m.timerFired(now: Self.at(550)) == .close(ProxyTimeout(code: .tunnelIdle, seconds: 300)))
    }

    @Test func anUpstreamConnectionTimesItsHandshakeAndItsWaitInThePool() {
        var (m, first) = Machine.upstream(Self.upstream, tls: true, now: Self.at(0))
        #expect(first == .arm(Self.at(10)))
        // The request is written while the handshake runs (the TLS handler buffers it).
        #expect(m.requestStarted(now: Self.at(0)) == .arm(Self.at(10)))
        #expect(m.handshakeCompleted(now: Self.at(1)) == .disarm)
        #expect(m.responseEnded(now: Self.at(2)) == .arm(Self.at(22)))
        // Taken from the pool again.
        #expect(m.requestStarted(now: Self.at(5)) == .disarm)
        #expect(m.responseEnded(now: Self.at(6)) == .arm(Self.at(26)))
        #expect(m.timerFired(now: Self.at(26)) == .close(ProxyTimeout(code: .upstreamIdle, seconds: 20)))
    }

    @Test func aStalledUpstreamHandshakeIsClosed() {
        var (m, _) = Machine.upstream(Self.upstream, tls: true, now: Self.at(0))
        _ = m.requestStarted(now: Self.at(0))
        #expect(m.timerFired(now: Self.at(10)) == .close(ProxyTimeout(code: .tlsHandshake, seconds: 10)))
    }

    @Test func aPlainUpstreamStartsBusyAndBytesDoNotMakeItIdle() {
        var (m, first) = Machine.upstream(Self.upstream, tls: false, now: Self.at(0))
        #expect(first == .disarm)
        _ = m.requestStarted(now: Self.at(0))
        #expect(m.bytesReceived(now: Self.at(1)) == .keep)
        #expect(m.phase == .busy)
    }

    @Test(arguments: [0.0, -1, .nan, .infinity, -.infinity])
    func aTimeoutOfZeroOrNonsenseIsOff(value: Double) {
        let off = Machine.Timeouts(head: value, idle: value, tunnelIdle: value, handshake: value)
        var (m, first) = Machine.client(off, now: Self.at(0))
        #expect(first == .disarm)
        _ = m.interceptedTunnelStarted(now: Self.at(0))
        #expect(m.timerFired(now: Self.at(1e6)) == .disarm)
        #expect(ProxyLimits.amount(value) == nil)
    }

    @Test func hugeTimeoutsDoNotTrap() {
        #expect(ProxyLimits.amount(1e300) == .seconds(365 * 24 * 3600))
        let (_, first) = Machine.client(Machine.Timeouts(head: 1e300), now: Self.at(0))
        #expect(first == .arm(Self.at(0) + .seconds(365 * 24 * 3600)))
    }

    @Test func theFinishedMachineNeverCloses() {
        var (m, _) = Machine.client(Self.client, now: Self.at(0))
        #expect(m.finished() == .disarm)
        #expect(m.timerFired(now: Self.at(1e5)) == .disarm)
    }

    @Test func theTimerLooksAQuarterOfThePhasesTimeoutAheadWithinBounds() {
        var (m, _) = Machine.client(Self.client, now: Self.at(0))
        #expect(m.tick == .milliseconds(7500))  // head: 30 s
        _ = m.requestStarted(now: Self.at(0))
        _ = m.responseEnded(now: Self.at(0))
        #expect(m.tick == .seconds(15))  // idle: 60 s
        _ = m.interceptedTunnelStarted(now: Self.at(0))
        #expect(m.tick == .milliseconds(2500))  // handshake: 10 s
        _ = m.relayedTunnelStarted(now: Self.at(0))
        #expect(m.tick == .seconds(15))  // tunnel: 300 s, capped
        #expect(Machine.client(Machine.Timeouts(head: 0.001), now: Self.at(0)).0.tick == .milliseconds(10))
    }

    @Test func theAutomaticConnectionCapLeavesTwoDescriptorsPerConnectionAndAMargin() {
        #expect(ProxyLimits.automaticMaxConnections(openFilesLimit: 1024) == 480)
        #expect(ProxyLimits.automaticMaxConnections(openFilesLimit: 20000) == 9968)
        #expect(ProxyLimits.automaticMaxConnections(openFilesLimit: 10) == 16)
    }
}
