import NIOHTTP1
import Testing

@testable import AuthtapProxy

/// RFC 9110 §7.6.1: hop-by-hop fields, and every field the Connection header names, are not
/// forwarded; the rest go on in order, with their spelling and repeated values as they came.
@Test(
    arguments: [
        ([("Host", "a"), ("Accept", "*/*")], nil, [("Host", "a"), ("Accept", "*/*")]),
        (
            [("Content-Type", "application/json"), ("Connection", "keep-alive"), ("Cache-Control", "no-store")], nil,
            [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        ),
        (
            [
                ("connection", "close, X-Trace , keep-alive"), ("X-Trace", "1"), ("x-trace", "2"),
                ("Keep-Alive", "timeout=5"),
                ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
            ], nil,
            [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
        ),
        (
            [
                ("TE", "trailers"), ("Trailer", "X"), ("Upgrade", "h2c"), ("Proxy-Authorization", "Basic x"),
                ("Proxy-Connection", "keep-alive"), ("Date", "d"),
            ], nil,
            [("Date", "d")]
        ),
        // On responses Trailer is kept; Upgrade goes because Connection names it.
        ([("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Trailer", "X")], "response", [("Trailer", "X")]),
        ([("CONNECTION", "x-a,,"), ("X-A", "1"), ("X-AB", "2")], nil, [("X-AB", "2")]),
    ] as [([(String, String)], String?, [(String, String)])])
func hopByHopFieldsAreNotForwarded(_ input: [(String, String)], _ side: String?, _ expected: [(String, String)]) {
    let set = side == "response" ? HopByHop.responseFields : HopByHop.requestFields
    let out = HopByHop.endToEnd(HTTPHeaders(input), hopByHop: set)
    #expect(out.map { [$0.name, $0.value] } == expected.map { [$0.0, $0.1] })
}

@Test func sameNameIgnoresASCIICaseOnly() {
    #expect(HopByHop.sameName("Keep-Alive", lowercased: "keep-alive"))
    #expect(HopByHop.sameName("CONNECTION", lowercased: "connection"))
    #expect(!HopByHop.sameName("Connectio", lowercased: "connection"))
    #expect(!HopByHop.sameName("Connectiom", lowercased: "connection"))
    #expect(!HopByHop.sameName("TE", lowercased: "tf"))
}

@Test func connectionTokensAreTrimmedOfSpacesAndTabs() {
    let out = HopByHop.endToEnd(
        HTTPHeaders([
            ("Connection", " \tX-One\t , x-two  "), ("X-One", "1"), ("X-Two", "2"), ("X-Three", "3"),
        ]))
    #expect(out.map(\.name) == ["X-Three"])
}
