import AuthtapModel
import Testing

@testable import AuthtapProxy

/// The client connection's state machine as plain values: one test per transition, no channel, no sockets.
@Suite struct ClientConnectionStateMachineTests {
    typealias Machine = ClientConnectionStateMachine
    typealias Request = ClientConnectionStateMachine.Request

    static func forward(auth: Bool = false) -> Machine { Machine(mode: .forward, requiresAuthentication: auth) }

    /// A request whose head is checked and whose upstream connection is attached.
    static func forwarding(keepAlive: Bool = true, ended: Bool = false) -> Machine {
        var machine = forward()
        _ = machine.requestHead(keepAlive: keepAlive)
        _ = machine.upstreamAttached(flush: false)
        if ended { _ = machine.requestEnd() }
        return machine
    }

    // MARK: Inbound parts

    @Test func aHeadWhileIdleStartsARequest() {
        var machine = Self.forward()
        #expect(machine.requestHead(keepAlive: true) == .startRequest)
        #expect(machine.state == .received(Request(keepAlive: true)))
        #expect(machine.requestCount == 1)
    }

    @Test func aBodyPartBeforeTheEndIsForwarded() {
        var machine = Self.forwarding()
        #expect(machine.requestBodyPart() == .forwardBody)
        #expect(machine.state == .forwarding(Request(keepAlive: true)))
    }

    @Test func theEndIsForwardedAndMarksTheRequestEnded() {
        var machine = Self.forwarding()
        #expect(machine.requestEnd() == .forwardEnd)
        #expect(machine.state == .forwarding(Request(keepAlive: true, ended: true)))
    }

    @Test func aPipelinedRequestIsQueuedAndHoldsReads() {
        var machine = Self.forwarding(ended: true)
        #expect(machine.requestHead(keepAlive: true) == .queue)
        #expect(machine.requestBodyPart() == .queue)
        #expect(machine.requestEnd() == .queue)
        #expect(machine.state == .forwarding(Request(keepAlive: true, ended: true, queued: true)))
        #expect(machine.readRequested(writerBackedUp: false, upstreamBlocked: false) == .hold)
        #expect(machine.requestCount == 1)
    }

    @Test func partsWhileConnectingAfterTheEndAreQueued() {
        var machine = Self.forward()
        _ = machine.requestHead(keepAlive: true)
        machine.upstreamConnecting()
        #expect(machine.requestBodyPart() == .forwardBody)
        _ = machine.requestEnd()
        #expect(machine.requestHead(keepAlive: true) == .queue)
    }

    @Test func partsDuringTheUpgradeAreBuffered() {
        var machine = Self.forward()
        machine.upgradeStarted()
        #expect(machine.requestHead(keepAlive: true) == .bufferForUpgrade)
        #expect(machine.requestBodyPart() == .bufferForUpgrade)
        #expect(machine.requestEnd() == .bufferForUpgrade)
    }

    @Test func rawBytesDuringTheUpgradeBypassTheParts() {
        var machine = Self.forward()
        #expect(machine.inboundBypass == nil)
        machine.upgradeStarted()
        #expect(machine.inboundBypass == .bufferForUpgrade)
        machine.upgradeFinished()
        #expect(machine.inboundBypass == .drop)
    }

    @Test func partsAfterCloseAreDropped() {
        var machine = Self.forward()
        machine.channelInactive()
        #expect(machine.state == .closed)
        #expect(machine.requestHead(keepAlive: true) == .drop)
        #expect(machine.requestBodyPart() == .drop)
    }

    // MARK: CONNECT and the upgrade

    @Test func anAcceptedConnectOpensItsTunnelAtTheEnd() {
        var machine = Self.forward()
        _ = machine.requestHead(keepAlive: true)
        machine.connectAccepted(host: "idp.example", port: 443)
        #expect(machine.state == .connectRequested(host: "idp.example", port: 443, Request(keepAlive: true)))
        #expect(machine.requestEnd() == .openTunnel(host: "idp.example", port: 443))
        #expect(machine.requestEnded)
        machine.upstreamConnecting()
        #expect(machine.isConnecting)
    }

    @Test func theUpgradeBuffersThenCloses() {
        var machine = Self.forward()
        machine.upgradeStarted()
        #expect(machine.state == .upgrading)
        machine.upgradeFinished()
        #expect(machine.state == .closed)
    }

    // MARK: Upstream

    @Test func attachingSendsWhatWasKeptAndFlushesWhenTheRequestEnded() {
        var machine = Self.forward()
        _ = machine.requestHead(keepAlive: true)
        machine.upstreamConnecting()
        #expect(machine.readRequested(writerBackedUp: false, upstreamBlocked: false) == .hold)
        _ = machine.requestEnd()
        #expect(machine.upstreamAttached(flush: false) == .sendPending(flush: true, sent: true))
        #expect(machine.state == .forwarding(Request(keepAlive: true, ended: true)))
        #expect(machine.readsMayResume(writerBackedUp: false, upstreamBlocked: false) == .read)
    }

    @Test func attachingAPooledConnectionMidRequestWaitsForTheReadToComplete() {
        var machine = Self.forward()
        _ = machine.requestHead(keepAlive: true)
        #expect(machine.upstreamAttached(flush: false) == .sendPending(flush: false, sent: false))
    }

    @Test func aFinalResponseHeadStartsTheResponse() {
        var machine = Self.forwarding(keepAlive: false)
        #expect(machine.upstreamResponseHead() == true)  // the client is told the connection closes
        #expect(machine.responseStarted)
        var keep = Self.forwarding()
        #expect(keep.upstreamResponseHead() == false)
    }

    @Test func theResponseEndReleasesTheUpstreamOnlyWhenTheRequestEnded() {
        var ended = Self.forwarding(ended: true)
        #expect(ended.upstreamResponseEnd() == .finish(releaseUpstream: true, closeClient: false))
        var open = Self.forwarding(keepAlive: false)
        #expect(open.upstreamResponseEnd() == .finish(releaseUpstream: false, closeClient: true))
    }

    @Test func aFailedPooledConnectionIsRetriedOnceBeforeAnyResponse() {
        var machine = Self.forwarding(ended: true)
        #expect(machine.upstreamFailed(mayRetry: true) == .retry)
        #expect(machine.isConnecting)
    }

    @Test func aFailureWithARequestStillArrivingIsNotRetried() {
        var machine = Self.forwarding()
        #expect(machine.upstreamFailed(mayRetry: true) == .answerBadGateway)
    }

    @Test func aFailureMidResponseCutsTheClient() {
        var machine = Self.forwarding(ended: true)
        _ = machine.upstreamResponseHead()
        #expect(machine.upstreamFailed(mayRetry: true) == .cutClient)
    }

    // MARK: Endings

    @Test func aFinishedExchangeReturnsToIdle() {
        var machine = Self.forwarding(ended: true)
        #expect(machine.exchangeFinished(failed: false, isConnect: false) == .submitAndReplay)
        #expect(machine.state == .idle)
    }

    @Test func theResponseIsDoneButTheRequestBodyIsStillArriving() {
        var machine = Self.forwarding()
        _ = machine.upstreamResponseHead()
        #expect(machine.exchangeFinished(failed: false, isConnect: false) == .awaitRequestEnd)
        #expect(machine.state == .discarding(Request(keepAlive: true, responseStarted: true)))
        #expect(machine.requestBodyPart() == .recordDiscardedBody)
        #expect(machine.requestHead(keepAlive: true) == .drop)
        #expect(machine.requestEnd() == .finishDiscarding(close: false))
        #expect(machine.state == .idle)
    }

    @Test func aDiscardedBodyOfAClosingRequestClosesAtItsEnd() {
        var machine = Self.forwarding(keepAlive: false)
        _ = machine.exchangeFinished(failed: false, isConnect: false)
        #expect(machine.requestEnd() == .finishDiscarding(close: true))
    }

    @Test func aFailedExchangeIsRecordedAtOnceEvenWithItsBodyArriving() {
        var machine = Self.forwarding()
        #expect(machine.exchangeFinished(failed: true, isConnect: false) == .submitAndReplay)
    }

    @Test func anErrorAnswerOnAKeptConnectionDropsTheRestOfTheBody() {
        var machine = Self.forward()
        _ = machine.requestHead(keepAlive: true)
        let answer = machine.errorAnswerStarted()
        #expect(answer == .init(closeAfter: false, bodyPending: true))
        #expect(machine.exchangeFinished(failed: true, isConnect: false) == .submitAndReplay)
        machine.errorAnswerWritten(answer)
        #expect(machine.state == .discarding(Request(keepAlive: true, responseStarted: true)))
    }

    @Test func anErrorAnswerThatClosesLeavesNothingToDiscard() {
        var machine = Self.forward()
        _ = machine.requestHead(keepAlive: true)
        machine.closeAfterResponse()
        let answer = machine.errorAnswerStarted()
        #expect(answer == .init(closeAfter: true, bodyPending: true))
        _ = machine.exchangeFinished(failed: true, isConnect: false)
        machine.errorAnswerWritten(answer)
        #expect(machine.state == .idle)
    }

    @Test func anExchangeFinishedWhileDiscardingKeepsDiscarding() {
        var machine = Self.forwarding()
        _ = machine.exchangeFinished(failed: false, isConnect: false)
        #expect(machine.exchangeFinished(failed: true, isConnect: false) == .submitAndResumeReads)
    }

    // MARK: Errors

    @Test func aParseErrorAnswersMalformedAndCloses() {
        var machine = Self.forward()
        _ = machine.requestHead(keepAlive: true)
        #expect(
            machine.requestParseFailed(headerOverflow: false, exchangeOpen: true)
                == .answer(.malformedRequest, unauthenticated: false))
        #expect(machine.keepAlive == false)
        #expect(machine.errorAnswerStarted().closeAfter)
    }

    @Test func aHeaderOverflowAnswersHeadersTooLarge() {
        var machine = Self.forward()
        #expect(
            machine.requestParseFailed(headerOverflow: true, exchangeOpen: false)
                == .answer(.headersTooLarge, unauthenticated: false))
    }

    @Test func aParseErrorAfterTheResponseStartedIsAClientFailure() {
        var machine = Self.forwarding()
        _ = machine.upstreamResponseHead()
        #expect(machine.requestParseFailed(headerOverflow: false, exchangeOpen: true) == .clientFailed)
    }

    @Test func garbageAsTheFirstBytesInATunnelIsNotHTTP() {
        var machine = Machine(mode: .intercepted, requiresAuthentication: false)
        #expect(
            machine.requestParseFailed(headerOverflow: false, exchangeOpen: false)
                == .answer(.nonHTTPInTunnel, unauthenticated: false))
    }

    @Test func aParseErrorBeforeAuthenticationIsCountedNotRecorded() {
        var machine = Self.forward(auth: true)
        #expect(
            machine.requestParseFailed(headerOverflow: false, exchangeOpen: false)
                == .answer(.malformedRequest, unauthenticated: true))
        var authenticated = Self.forward(auth: true)
        _ = authenticated.requestHead(keepAlive: true)
        authenticated.authenticationSucceeded()
        #expect(
            authenticated.requestParseFailed(headerOverflow: false, exchangeOpen: true)
                == .answer(.malformedRequest, unauthenticated: false))
    }

    @Test func theClientsTLSFailureIsRecordedOnce() {
        var machine = Machine(mode: .intercepted, requiresAuthentication: false)
        #expect(machine.failsClientHandshake)
        #expect(machine.closedDuringClientHandshake)
        let first = machine.clientTLSFailed()
        let second = machine.clientTLSFailed()
        #expect(first)
        #expect(!second)
        #expect(!machine.closedDuringClientHandshake)
    }

    @Test func aCompletedHandshakeIsNoFailure() {
        var machine = Machine(mode: .intercepted, requiresAuthentication: false)
        machine.tlsHandshakeCompleted()
        #expect(!machine.failsClientHandshake)
        #expect(!machine.closedDuringClientHandshake)
        var forward = Self.forward()
        let recorded = forward.clientTLSFailed()
        #expect(!recorded)
    }

    // MARK: Reads

    @Test func aBackedUpSinkHoldsTheNextRequestAndIsCheckedAgain() {
        var machine = Self.forward()
        #expect(machine.readRequested(writerBackedUp: true, upstreamBlocked: false) == .holdAndRecheck)
        #expect(machine.readsMayResume(writerBackedUp: true, upstreamBlocked: false) == .holdAndRecheck)
        #expect(machine.readsMayResume(writerBackedUp: false, upstreamBlocked: false) == .read)
        #expect(machine.readsMayResume(writerBackedUp: false, upstreamBlocked: false) == nil)
    }

    @Test func readsGoOnWhileAResponseComesUnlessTheUpstreamIsBlocked() {
        var machine = Self.forwarding(ended: true)
        #expect(machine.readRequested(writerBackedUp: false, upstreamBlocked: false) == .read)
        #expect(machine.readRequested(writerBackedUp: false, upstreamBlocked: true) == .hold)
        #expect(machine.readRequested(writerBackedUp: true, upstreamBlocked: false) == .hold)
        var midBody = Self.forwarding()
        #expect(midBody.readRequested(writerBackedUp: true, upstreamBlocked: false) == .read)
    }

    @Test func noReadWaitsWithoutAHeldRead() {
        var machine = Self.forward()
        #expect(machine.readsMayResume(writerBackedUp: false, upstreamBlocked: false) == nil)
    }
}
