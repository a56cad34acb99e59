import NIOHTTP2
import Testing

@testable import AuthtapProxy

/// HTTP/2's failures are recorded by their RFC 9113 §7 code names.
struct HTTP2FailureTests {
    @Test func codesAreNamedAsTheRFCSpellsThem() {
        #expect(FailureClassifier.name(.refusedStream) == "REFUSED_STREAM")
        #expect(FailureClassifier.name(.enhanceYourCalm) == "ENHANCE_YOUR_CALM")
        #expect(FailureClassifier.name(.http11Required) == "HTTP_1_1_REQUIRED")
        #expect(FailureClassifier.name(HTTP2ErrorCode(networkCode: 0x1f)) == "0x1f")
    }

    @Test func aGoAwayBelowTheStreamIsNamedBeforeTheStreamsOwnClosing() {
        let goAway = FailureClassifier.GoAway(code: .enhanceYourCalm, lastStreamID: 1)
        let failure = FailureClassifier.upstreamStream(nil, goAway: goAway, streamID: 3)
        #expect(failure?.kind == .upstreamGoAway)
        #expect(failure?.detail.contains("ENHANCE_YOUR_CALM") == true)
        #expect(failure?.detail.contains("stream 3") == true)
        // A stream the server still answers is not the GOAWAY's.
        #expect(
            FailureClassifier.upstreamStream(nil, goAway: .init(code: .noError, lastStreamID: 5), streamID: 3) == nil)
    }

    @Test func aClosedConnectionWithoutHTTP2WordsIsLeftToTheHTTP1Classification() {
        #expect(FailureClassifier.upstreamStream(nil, goAway: nil, streamID: 1) == nil)
    }
}
