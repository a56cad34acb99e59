import AuthtapModel
import Foundation
import NIOHTTP1
import Testing

@testable import AuthtapProxy

/// `--reverse URL[@HOST:PORT]` and `--rewrite-urls`, without sockets.
struct ReverseModeTests {
    @Test func aTargetReadsItsOriginPrefixAndListenAddress() throws {
        let plain = try ReverseTarget.parse("https://login.example.com")
        #expect(plain.scheme == .https && plain.host == "login.example.com" && plain.port == 443)
        #expect(plain.pathPrefix == "" && plain.listenHost == nil && plain.listenPort == nil)
        #expect(plain.origin == "https://login.example.com")

        let tenant = try ReverseTarget.parse("https://localhost:9443/realms/demo/@127.0.0.1:0")
        #expect(tenant.port == 9443 && tenant.pathPrefix == "/realms/demo")
        #expect(tenant.listenHost == "127.0.0.1" && tenant.listenPort == 0)
        #expect(tenant.origin == "https://localhost:9443")

        let v6 = try ReverseTarget.parse("http://[::1]:8000@[::1]:8443")
        #expect(v6.scheme == .http && v6.host == "::1" && v6.listenHost == "::1" && v6.listenPort == 8443)
        #expect(v6.origin == "http://[::1]:8000")
    }

    @Test(arguments: [
        "login.example.com", "ftp://x", "https://a@127.0.0.1", "https://a@127.0.0.1:99999", "https://a/?q=1",
        "https://a@:1",
    ])
    func aTargetThatIsNotOneIsRefused(_ spec: String) {
        #expect(throws: ReverseTarget.ParseError.self) { try ReverseTarget.parse(spec) }
    }

    /// The shape of a real discovery document (django-oauth-toolkit's, Tests/integration/authserver2), in both
    /// spellings servers write: plain, and with JSON's escaped slashes (PHP's json_encode escapes `/` by default,
    /// so a PHP server that does not pass JSON_UNESCAPED_SLASHES sends `https:\/\/`).
    @Test func discoveryURLsAreRewrittenAndOtherOriginsAreNot() {
        let rewriter = OriginRewriter(from: "https://localhost:9443", to: "https://127.0.0.1:8443")
        let body = #"""
            {"issuer":"https://localhost:9443/o","authorization_endpoint":"https://LOCALHOST:9443/o/authorize/",\#
            "token_endpoint":"https:\/\/localhost:9443\/o\/token\/",\#
            "jwks_uri":"https://localhost:9443/o/.well-known/jwks.json",\#
            "op_policy_uri":"https://localhost:94430/x","service_documentation":"https://localhost:9443.evil/x",\#
            "other":"https://localhost:9443"}
            """#
        let (bytes, count) = rewriter.rewrite(Array(body.utf8))
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(count == 4)
        // The issuer stays the server's: every id_token it signs carries it as `iss`.
        #expect(text.contains(#""issuer":"https://localhost:9443/o""#))
        #expect(text.contains(#""token_endpoint":"https:\/\/127.0.0.1:8443\/o\/token\/""#))
        #expect(text.contains(#""authorization_endpoint":"https://127.0.0.1:8443/o/authorize/""#))
        #expect(text.contains(#""other":"https://127.0.0.1:8443"}"#))
        #expect(text.contains("https://localhost:94430/x") && text.contains("https://localhost:9443.evil/x"))
    }

    @Test func aLocationIsRewrittenOnlyWhenItStartsWithTheOrigin() {
        let rewriter = OriginRewriter(from: "https://login.example.com", to: "https://localhost:8443")
        #expect(
            rewriter.rewriteHeader("https://login.example.com/login?next=%2F")
                == "https://localhost:8443/login?next=%2F")
        #expect(rewriter.rewriteHeader("https://app.example/cb?code=x&iss=https://login.example.com") == nil)
        #expect(rewriter.rewriteHeader("https://login.example.com:8443/x") == nil)
        #expect(rewriter.rewriteHeader("/relative") == nil)
    }

    @Test(
        arguments: [
            ("application/json", true), ("application/json; charset=utf-8", true), ("application/jwk-set+json", true),
            ("application/problem+json", true), ("text/html", false), (nil, false),
        ] as [(String?, Bool)])
    func onlyJSONBodiesAreRewritten(_ type: String?, _ rewritten: Bool) {
        #expect(OriginRewriter.rewritesBody(contentType: type) == rewritten)
    }

    @Test func anIssuerWrittenWithSpacesIsKeptToo() {
        let rewriter = OriginRewriter(from: "https://idp", to: "https://127.0.0.1:1")
        let json = "{\n  \"issuer\" : \"https://idp\",\n  \"x_issuer\": \"https://idp\"}"
        let (bytes, count) = rewriter.rewrite(Array(json.utf8))
        #expect(count == 1)
        #expect(
            String(decoding: bytes, as: UTF8.self)
                == json.replacingOccurrences(of: ": \"https://idp\"}", with: ": \"https://127.0.0.1:1\"}"))
    }

    /// RFC 9113 §8.2.3: Chromium sends each cookie pair as its own field over HTTP/2; an HTTP/1.1 server reads one.
    @Test func http2CookieCrumbsBecomeOneFieldWhereTheFirstWas() {
        var headers = HTTPHeaders([
            ("host", "login.example"), ("cookie", "csrftoken=a"), ("accept", "*/*"), ("cookie", "sessionid=b"),
            ("cookie", "theme=dark"),
        ])
        HopByHop.joinCookies(&headers)
        #expect(
            headers.map { "\($0.name): \($0.value)" } == [
                "host: login.example", "cookie: csrftoken=a; sessionid=b; theme=dark", "accept: */*",
            ])
        var single = HTTPHeaders([("Cookie", "a=1")])
        HopByHop.joinCookies(&single)
        #expect(single["cookie"] == ["a=1"])
    }
}
