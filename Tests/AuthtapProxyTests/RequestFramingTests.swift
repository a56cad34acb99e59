import NIOHTTP1
import Testing

@testable import AuthtapProxy

// The variants are PortSwigger's "HTTP request smuggling" catalogue (CL.TE, TE.CL, TE.TE obfuscations,
// portswigger.net/web-security/request-smuggling and .../request-smuggling/exploiting) and the rules of
// RFC 9112 §6.1 (Transfer-Encoding; CL with TE) and §6.3 (message body length; differing Content-Length).
// Headers are given as NIO's decoder hands them over (llhttp has already trimmed OWS around values).

typealias Violation = RequestFraming.Violation

@Test(
    arguments: [
        // Connection naming a framing or routing field: dropped as hop-by-hop, the body would go on unframed.
        (
            [("Content-Length", "5"), ("Connection", "content-length")],
            Violation.connectionNamesFramingField("content-length")
        ),
        (
            [("Content-Length", "5"), ("Connection", "keep-alive, Content-Length")],
            .connectionNamesFramingField("content-length")
        ),
        (
            [("Transfer-Encoding", "chunked"), ("Connection", "Transfer-Encoding")],
            .connectionNamesFramingField("transfer-encoding")
        ),
        ([("Host", "a"), ("Connection", "\thost ")], .connectionNamesFramingField("host")),
        // CL.TE and TE.CL: both framings at once.
        ([("Content-Length", "6"), ("Transfer-Encoding", "chunked")], .contentLengthAndTransferEncoding),
        ([("Transfer-Encoding", "chunked"), ("Content-Length", "3")], .contentLengthAndTransferEncoding),
        // TE.TE obfuscations: one parser sees chunked, the other does not.
        ([("Transfer-Encoding", "xchunked")], .unsupportedTransferEncoding),
        ([("Transfer-Encoding", "chunked, identity")], .unsupportedTransferEncoding),
        ([("Transfer-Encoding", "identity, chunked")], .unsupportedTransferEncoding),
        ([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "x")], .unsupportedTransferEncoding),
        ([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], .unsupportedTransferEncoding),
        ([("Transfer-Encoding", "chunked;x=1")], .unsupportedTransferEncoding),
        ([("Transfer-Encoding", "gzip")], .unsupportedTransferEncoding),
        ([("Transfer-Encoding", "")], .unsupportedTransferEncoding),
        // Content-Length: differing, not a number.
        ([("Content-Length", "5"), ("Content-Length", "6")], .conflictingContentLength),
        ([("Content-Length", "5, 6")], .conflictingContentLength),
        ([("Content-Length", "+5")], .invalidContentLength),
        ([("Content-Length", "0x5")], .invalidContentLength),
        ([("Content-Length", "5 5")], .invalidContentLength),
        ([("Content-Length", "")], .invalidContentLength),
        ([("Content-Length", "5,")], .invalidContentLength),
        ([("Content-Length", "9999999999999999999")], .invalidContentLength),
    ] as [([(String, String)], Violation)])
func ambiguousFramingIsRefused(_ headers: [(String, String)], _ violation: Violation) {
    let result = RequestFraming.check(method: .POST, version: .http1_1, headers: HTTPHeaders(headers))
    #expect(result == .failure(violation))
}

@Test func transferEncodingInHTTP10IsRefused() {
    let chunked = HTTPHeaders([("Transfer-Encoding", "chunked")])
    #expect(
        RequestFraming.check(method: .POST, version: .http1_0, headers: chunked) == .failure(.transferEncodingInHTTP10))
}

@Test func traceAndConnectCarryNoBody() {
    #expect(
        RequestFraming.check(method: .TRACE, version: .http1_1, headers: HTTPHeaders([("Content-Length", "4")]))
            == .failure(.bodyNotAllowed("TRACE")))
    let chunked = HTTPHeaders([("Transfer-Encoding", "chunked")])
    #expect(
        RequestFraming.check(method: .CONNECT, version: .http1_1, headers: chunked)
            == .failure(.bodyNotAllowed("CONNECT")))
    #expect(
        RequestFraming.check(method: .CONNECT, version: .http1_1, headers: HTTPHeaders([("Content-Length", "0")]))
            == .success(.contentLength(0)))
}

@Test(
    arguments: [
        ([], RequestFraming.Body.none),
        ([("Content-Length", "12")], .contentLength(12)),
        ([("content-length", "007")], .contentLength(7)),
        ([("Content-Length", "5"), ("Content-Length", "5")], .contentLength(5)),
        ([("Content-Length", "5, 5")], .contentLength(5)),
        ([("Transfer-Encoding", "chunked")], .chunked),
        ([("transfer-encoding", "Chunked")], .chunked),
        ([("Connection", "keep-alive, x-trace"), ("Content-Length", "1")], .contentLength(1)),
    ] as [([(String, String)], RequestFraming.Body)])
func unambiguousFramingIsAccepted(_ headers: [(String, String)], _ body: RequestFraming.Body) {
    #expect(RequestFraming.check(method: .POST, version: .http1_1, headers: HTTPHeaders(headers)) == .success(body))
}

/// Upstream gets one canonical framing field, spelled as NIO's encoder expects it (it frames a GET as
/// chunked only when the value is exactly `chunked`), never the client's spelling.
@Test(
    arguments: [
        (
            [("A", "1"), ("content-length", "007")], RequestFraming.Body.contentLength(7), HTTPMethod.POST,
            [("A", "1"), ("Content-Length", "7")]
        ),
        ([("Content-Length", "5"), ("Content-Length", "5")], .contentLength(5), .PUT, [("Content-Length", "5")]),
        (
            [("transfer-encoding", "Chunked"), ("B", "2")], .chunked, .GET,
            [("B", "2"), ("Transfer-Encoding", "chunked")]
        ),
        ([("A", "1")], .none, .POST, [("A", "1"), ("Content-Length", "0")]),
        ([("A", "1")], .none, .GET, [("A", "1")]),
        ([("Content-Length", "3"), ("A", "1")], .contentLength(3), .POST, [("Content-Length", "3"), ("A", "1")]),
    ] as [([(String, String)], RequestFraming.Body, HTTPMethod, [(String, String)])])
func forwardedFramingIsCanonical(
    _ input: [(String, String)], _ body: RequestFraming.Body, _ method: HTTPMethod,
    _ expected: [(String, String)]
) {
    let out = RequestFraming.forwarded(HTTPHeaders(input), body: body, method: method)
    #expect(out.map { [$0.name, $0.value] } == expected.map { [$0.0, $0.1] })
    #expect(
        RequestFraming.check(method: method, version: .http1_1, headers: out)
            == .success(body == .none && method == .POST ? .contentLength(0) : body))
}
