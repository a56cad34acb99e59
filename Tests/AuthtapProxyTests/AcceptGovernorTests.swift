import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import AuthtapProxy

#if canImport(Glibc)
    import Glibc
#endif

/// The connection counter's pause/resume decisions and the accept-error back-off, as values.
@Suite struct AcceptGovernorTests {
    static let t0 = NIODeadline.uptimeNanoseconds(5_000_000_000)
    static func ms(_ n: Int64) -> NIODeadline { t0 + .milliseconds(n) }

    @Test func acceptingHoldsAtTheCapAndResumesWhenAConnectionCloses() {
        var g = AcceptGovernor(maxConnections: 2)
        #expect(g.readRequested(now: Self.ms(0)) == .read)
        g.accepted()
        #expect(g.readRequested(now: Self.ms(0)) == .read)
        g.accepted()
        #expect(g.readRequested(now: Self.ms(0)) == .hold(resumeAt: nil))
        #expect(g.readOwed)
        #expect(g.closed(now: Self.ms(1)) == .read)
        #expect(!g.readOwed)
        // Nothing owed: a close does not start a read of its own.
        #expect(g.closed(now: Self.ms(2)) == nil)
        #expect(g.open == 0)
    }

    @Test func aCloseWithNoReadOwedNeverGoesBelowZero() {
        var g = AcceptGovernor(maxConnections: 1)
        #expect(g.closed(now: Self.ms(0)) == nil)
        #expect(g.open == 0)
    }

    @Test func accept_errorsBackOffDoublingUpToTheMaximumAndACleanAcceptResets() {
        var g = AcceptGovernor(maxConnections: 100, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(300))
        #expect(g.acceptFailed(now: Self.ms(0)).resumeAt == Self.ms(50))
        #expect(g.readOwed)  // the failed connection is still queued
        #expect(g.readRequested(now: Self.ms(10)) == .hold(resumeAt: Self.ms(50)))
        #expect(g.readRequested(now: Self.ms(50)) == .read)
        #expect(g.acceptFailed(now: Self.ms(50)).resumeAt == Self.ms(150))
        #expect(g.acceptFailed(now: Self.ms(150)).resumeAt == Self.ms(350))
        #expect(g.acceptFailed(now: Self.ms(350)).resumeAt == Self.ms(650))  // capped at 300 ms
        g.accepted()
        #expect(g.acceptFailed(now: Self.ms(1000)).resumeAt == Self.ms(1050))
    }

    @Test func aConnectionClosingDuringTheBackOffDoesNotCutItShort() {
        var g = AcceptGovernor(maxConnections: 1)
        g.accepted()
        _ = g.acceptFailed(now: Self.ms(0))
        #expect(g.readRequested(now: Self.ms(1)) == .hold(resumeAt: nil))
        #expect(g.closed(now: Self.ms(2)) == nil)
        #expect(g.readRequested(now: Self.ms(50)) == .read)
    }

    @Test func oneLinePerIntervalCountsTheErrorsInBetween() {
        var g = AcceptGovernor(maxConnections: 10, logInterval: .seconds(10))
        var lines: [Int] = []
        for i in 0..<1000 {
            // One failed accept every 100 ms for 100 s.
            if let count = g.acceptFailed(now: Self.ms(Int64(i) * 100)).log { lines.append(count) }
        }
        #expect(lines.count == 10)
        #expect(lines.first == 1)
        #expect(lines.dropFirst().allSatisfy { $0 == 100 })
    }

    @Test(arguments: [
        (EMFILE, true), (ENFILE, true), (ENOBUFS, true), (ENOMEM, true), (ECONNABORTED, false),
        (EINVAL, false),
    ])
    func resourceErrorsAreTheOnesBackedOffFor(code: CInt, backsOff: Bool) {
        #expect(AcceptGovernor.isResourceExhaustion(errno: code) == backsOff)
    }
}

/// The listening channel's handler on an embedded loop: reads held and resumed, one log line per interval.
@Suite struct AcceptGateTests {
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = Never
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    final class Lines: Sendable {
        let value = Mutex<[String]>([])
        func add(_ line: String) { value.withLock { $0.append(line) } }
        var count: Int { value.withLock { $0.count } }
    }

    func setUp(max: Int) throws -> (EmbeddedEventLoop, EmbeddedChannel, ReadCounter, Lines) {
        let loop = EmbeddedEventLoop()
        let server = EmbeddedChannel(loop: loop)
        let counter = ReadCounter()
        let lines = Lines()
        let gate = AcceptGate(governor: AcceptGovernor(maxConnections: max), log: { lines.add($0) })
        try server.pipeline.syncOperations.addHandlers([counter, gate])
        return (loop, server, counter, lines)
    }

    @Test func readsPauseAtTheCapAndResumeWhenAClientLeaves() throws {
        let (loop, server, counter, lines) = try setUp(max: 2)
        var children: [EmbeddedChannel] = []
        for _ in 0..<2 {
            server.read()
            let child = EmbeddedChannel(loop: loop)
            children.append(child)
            try server.writeInbound(child as any Channel)
        }
        #expect(counter.reads == 2)
        server.read()
        server.read()
        #expect(counter.reads == 2)
        #expect(lines.count == 1)  // the cap is reported once, not per held read
        _ = try children[0].finish()
        loop.run()
        #expect(counter.reads == 3)
        _ = try children[1].finish()
        loop.run()
        #expect(counter.reads == 3)  // nothing was owed
    }

    @Test func descriptorExhaustionBacksOffAndLogsOnce() throws {
        let (loop, server, counter, lines) = try setUp(max: 100)
        // Every accept fails, as with no descriptor left: each read the gate lets through meets EMFILE.
        server.read()
        var seen = 0
        for _ in 0..<150 {
            if counter.reads > seen {
                seen = counter.reads
                server.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept"))
                server.read()
            }
            loop.advanceTime(by: .milliseconds(20))
        }
        // 3 s of failing accepts: 50, 100, 200, 400, 800 ms, then 1 s apart; one log line.
        #expect(counter.reads >= 5 && counter.reads <= 8)
        #expect(lines.count == 1)
        #expect(lines.value.withLock { $0[0] }.contains("EMFILE"))
        // Descriptors are back: the next read goes through and a clean accept resets the back-off.
        loop.advanceTime(by: .seconds(2))
        let child = EmbeddedChannel(loop: loop)
        try server.writeInbound(child as any Channel)
        let before = counter.reads
        server.read()
        #expect(counter.reads == before + 1)
        #expect(throws: Never.self) { try server.throwIfErrorCaught() }
    }

    @Test func otherErrorsGoOn() throws {
        let (_, server, _, lines) = try setUp(max: 100)
        server.pipeline.fireErrorCaught(IOError(errnoCode: EINVAL, reason: "accept"))
        #expect(throws: IOError.self) { try server.throwIfErrorCaught() }
        server.pipeline.fireErrorCaught(IOError(errnoCode: ECONNABORTED, reason: "accept"))
        #expect(throws: Never.self) { try server.throwIfErrorCaught() }
        #expect(lines.count == 0)
    }
}
