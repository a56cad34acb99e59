import AuthtapModel
import Crypto
import Foundation
import Testing

@testable import AuthtapOAuth

let masker = Masker(fingerprinter: Fingerprinter(key: Array("unit-test-key-0123456789abcdef!!".utf8)))
func fp(_ v: String) -> String { masker.fingerprinter.fingerprint(v) }

struct MaskCase: Sendable, CustomStringConvertible {
    var description: String
    var secret: String
    var exchange: @Sendable () -> Exchange
}

func baseExchange(method: String = "GET", target: String = "/", status: Int? = 200) -> Exchange {
    var e = Exchange(
        connectionID: 1, clientAddress: "127.0.0.1:1", scheme: .https, host: "idp.test", port: 443,
        method: method, target: target, start: Date(timeIntervalSince1970: 0))
    e.status = status
    return e
}

func body(_ text: String) -> CapturedBody { CapturedBody(bytes: Array(text.utf8), size: text.utf8.count) }

let jwtHeader = JWT.base64URL(Array(#"{"alg":"RS256","kid":"k1"}"#.utf8))
let jwtClaims = JWT.base64URL(Array(#"{"sub":"alice","aud":"app"}"#.utf8))
let sampleJWT = "\(jwtHeader).\(jwtClaims).SIGNATUREsignatureSIGNATURE0123"

/// Every position a secret can take, each with the secret that must disappear.
let maskCases: [MaskCase] = [
    .init(description: "query code", secret: "QCODE123") { baseExchange(target: "/cb?code=QCODE123&state=s") },
    .init(description: "percent-encoded query", secret: "A/B+C=") {
        baseExchange(target: "/cb?code=A%2FB%2BC%3D&state=s")
    },
    .init(description: "fragment token", secret: "FRAGTOKEN") {
        baseExchange(target: "/cb#access_token=FRAGTOKEN&token_type=bearer")
    },
    .init(description: "form client_secret", secret: "FORMSECRET") {
        var e = baseExchange(method: "POST", target: "/token")
        e.requestHeaders = [HeaderField("Content-Type", "application/x-www-form-urlencoded")]
        e.requestBody = body("grant_type=client_credentials&client_secret=FORMSECRET")
        return e
    },
    .init(description: "form without content-type", secret: "PWVALUE") {
        var e = baseExchange(method: "POST", target: "/token")
        e.requestBody = body("grant_type=password&username=a&password=PWVALUE")
        return e
    },
    .init(description: "json nested any depth", secret: "DEEPASSERTION") {
        var e = baseExchange(method: "POST", target: "/x")
        e.requestHeaders = [HeaderField("Content-Type", "application/json")]
        e.requestBody = body(#"{"a":{"b":[{"c":{"assertion":"DEEPASSERTION"}}]}}"#)
        return e
    },
    .init(description: "json escaped quotes", secret: #"ab\"cd"#) {
        var e = baseExchange(method: "POST", target: "/x")
        e.requestBody = body(#"{"client_secret":"ab\"cd"}"#)
        return e
    },
    .init(description: "truncated json", secret: "TRUNCATEDREFRESH") {
        var e = baseExchange(target: "/token")
        e.responseHeaders = [HeaderField("Content-Type", "application/json")]
        e.responseBody = CapturedBody(
            bytes: Array(#"{"access_token":"x","refresh_token":"TRUNCATEDREFRESH"#.utf8), size: 5000)
        return e
    },
    .init(description: "numeric secret in json", secret: "987654321") {
        var e = baseExchange(target: "/x")
        e.responseBody = body(#"{"code":987654321}"#)
        return e
    },
    .init(description: "location header", secret: "LOCCODE") {
        var e = baseExchange(target: "/authorize", status: 302)
        e.responseHeaders = [HeaderField("Location", "https://app/cb?code=LOCCODE&state=s")]
        return e
    },
    .init(description: "referer header", secret: "REFCODE") {
        var e = baseExchange(target: "/x")
        e.requestHeaders = [HeaderField("Referer", "https://app/cb?state=s&code=REFCODE")]
        return e
    },
    .init(description: "basic authorization", secret: "BASICSECRET") {
        var e = baseExchange(method: "POST", target: "/token")
        e.requestHeaders = [
            HeaderField("Authorization", "Basic " + Data("client:BASICSECRET".utf8).base64EncodedString())
        ]
        return e
    },
    .init(description: "bearer authorization", secret: "BEARERTOKEN") {
        var e = baseExchange(target: "/userinfo")
        e.requestHeaders = [HeaderField("authorization", "Bearer BEARERTOKEN")]
        return e
    },
    .init(description: "proxy authorization", secret: "dXNlcjpQUk9YWVBBU1M=") {
        var e = baseExchange(target: "/x")
        e.requestHeaders = [HeaderField("Proxy-Authorization", "Basic dXNlcjpQUk9YWVBBU1M=")]
        return e
    },
    .init(description: "cookie", secret: "COOKIEVAL") {
        var e = baseExchange(target: "/x")
        e.requestHeaders = [HeaderField("Cookie", "a=COOKIEVAL; b=2")]
        return e
    },
    .init(description: "set-cookie", secret: "SETCOOKIEVAL") {
        var e = baseExchange(target: "/x")
        e.responseHeaders = [HeaderField("Set-Cookie", "sid=SETCOOKIEVAL; Path=/; HttpOnly")]
        return e
    },
    .init(description: "jwt signature", secret: "SIGNATUREsignatureSIGNATURE0123") {
        var e = baseExchange(method: "POST", target: "/token")
        e.responseBody = body(#"{"id_token":"\#(sampleJWT)","token_type":"Bearer"}"#)
        return e
    },
    .init(description: "html form_post", secret: "FORMPOSTCODE") {
        var e = baseExchange(target: "/authorize")
        e.responseHeaders = [HeaderField("Content-Type", "text/html")]
        e.responseBody = body(
            #"<form method="post"><input type="hidden" name="code" value="FORMPOSTCODE"/><input name="state" value="s"/></form>"#
        )
        return e
    },
    .init(description: "html value before name", secret: "VALUEFIRSTCODE") {
        var e = baseExchange(target: "/authorize")
        e.responseHeaders = [HeaderField("Content-Type", "text/html")]
        e.responseBody = body(
            #"<p>x</p><INPUT type='hidden' value='VALUEFIRSTCODE' NAME='code'><input name="state" value="s">"#)
        return e
    },
    .init(description: "json fragment inside text", secret: "TEXTJSONSECRET") {
        var e = baseExchange(target: "/x")
        e.responseHeaders = [HeaderField("Content-Type", "text/plain")]
        e.responseBody = body(#"upstream said: {"error":"x","refresh_token" : "TEXTJSONSECRET"} (truncated"#)
        return e
    },
    .init(description: "text/plain error detail", secret: "PLAINTOKEN") {
        var e = baseExchange(target: "/x")
        e.responseHeaders = [HeaderField("Content-Type", "text/plain")]
        e.responseBody = body("bad request: token=PLAINTOKEN was rejected")
        return e
    },
    .init(description: "github form-encoded token response", secret: "gho_GITHUBTOKEN") {
        var e = baseExchange(method: "POST", target: "/login/oauth/access_token")
        e.responseHeaders = [HeaderField("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
        e.responseBody = body("access_token=gho_GITHUBTOKEN&scope=repo&token_type=bearer")
        return e
    },
]

@Suite struct MaskingTests {
    @Test(arguments: maskCases)
    func secretDisappearsAndFingerprintStays(_ c: MaskCase) throws {
        let recorded = masker.record(c.exchange())
        let dump = String(decoding: try JSONEncoder().encode(recorded), as: UTF8.self)
        let all =
            dump + recorded.target
            + String(decoding: recorded.requestBody.bytes + recorded.responseBody.bytes, as: UTF8.self)
            + (recorded.requestHeaders + recorded.responseHeaders).map(\.value).joined()
        #expect(!all.contains(c.secret), "secret survived in \(c.description)")
        #expect(all.contains("[masked"), "no marker in \(c.description)")
    }

    @Test func markerCarriesKindLengthAndKeyedFingerprint() {
        let m = masker.marker(kind: "code", value: "abc")
        #expect(m == "[masked code len=3 fp=\(fp("abc"))]")
        #expect(fp("abc").count == 12)
        #expect(fp("abc") == fp("abc") && fp("abc") != fp("abd"))
        let other = Masker(fingerprinter: Fingerprinter(key: Array("another-key-another-key-another!!".utf8)))
        #expect(other.fingerprinter.fingerprint("abc") != fp("abc"), "fingerprints are keyed per install")
    }

    @Test func freeTextLeavesLookalikesAlone() {
        let text = "barcode=123 encode=1 tokens=5 code_challenge=abc <input name=\"state\" value=\"s\">"
        #expect(masker.maskFreeText(text) == text)
        #expect(masker.maskFreeText("a code=XYZ b") == "a code=\(masker.mask(kind: "code", value: "XYZ")) b")
    }

    @Test func jwtKeepsHeaderAndClaims() {
        let masked = masker.mask(kind: "id_token", value: sampleJWT)
        #expect(
            masked.hasPrefix(
                "\(jwtHeader).\(jwtClaims).[masked id_token-signature len=\(sampleJWT.count) fp=\(fp(sampleJWT))]"))
        let decoded = JWT.decode(masked)
        #expect(decoded?.claims["sub"] as? String == "alice")
        #expect(decoded?.header["kid"] as? String == "k1")
    }

    @Test func readableParametersStayReadable() {
        var e = baseExchange(
            target:
                "/authorize?response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp%2Fcb&state=S1&nonce=N1&code_challenge=CH&code_challenge_method=S256&scope=openid%20email"
        )
        e.status = 302
        let r = masker.record(e)
        #expect(r.target == e.target)
        let params = Dictionary(r.oauthParams.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(params["redirect_uri"] == "https://app/cb")
        #expect(params["scope"] == "openid email")
        #expect(params["state"] == "S1" && params["nonce"] == "N1" && params["code_challenge"] == "CH")
    }

    @Test func basicAuthKeepsClientID() {
        var e = baseExchange(method: "POST", target: "/token")
        e.requestHeaders = [HeaderField("Authorization", "Basic " + Data("my%20app:s3cret".utf8).base64EncodedString())]
        e.requestBody = body("grant_type=client_credentials")
        let r = masker.record(e)
        #expect(r.requestHeaders[0].value == "Basic my app:[masked client_secret len=6 fp=\(fp("s3cret"))]")
        #expect(r.oauthParams.contains { $0.name == "client_id" && $0.value == "my app" })
        #expect(r.oauthParams.contains { $0.name == "client_secret" && $0.fingerprint == fp("s3cret") })
    }

    @Test func pkceVerifierDigestIsKeptNotTheVerifier() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        var e = baseExchange(method: "POST", target: "/token")
        e.requestBody = body("grant_type=authorization_code&code=abc&code_verifier=\(verifier)")
        let r = masker.record(e)
        // RFC 7636 appendix B.
        #expect(
            r.oauthParams.contains {
                $0.name == "code_verifier_s256" && $0.value == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
            })
        #expect(!String(decoding: r.requestBody.bytes, as: UTF8.self).contains(verifier))
    }

    @Test func corruptEncodedBodiesAreNotKept() {
        var e = baseExchange(target: "/token")
        e.responseHeaders = [HeaderField("Content-Encoding", "gzip")]
        e.responseBody = CapturedBody(bytes: [0x1f, 0x8b, 1, 2, 3], size: 5)
        let r = masker.record(e)
        #expect(r.responseBody.bytes.isEmpty)
        #expect(r.responseBody.note?.hasPrefix("body not decoded:") == true, "\(r.responseBody.note ?? "")")
        #expect(r.responseBody.encoding == "gzip")
        #expect(r.responseBody.size == 5)
    }

    @Test func jsonMaskingByteByByteEqualsWhole() {
        let text = #"{"access_token":"AAA","nested":{"refresh_token":"BBB"},"n":1}"#
        var whole: [OAuthParam] = []
        let masked = JSONMasking.mask(Array(text.utf8), masker: masker, location: .other("b"), params: &whole)
        // Any prefix (a truncated capture) masks what it has and never leaks a secret.
        for cut in 0...text.utf8.count {
            var p: [OAuthParam] = []
            let out = String(
                decoding: JSONMasking.mask(
                    Array(text.utf8.prefix(cut)), masker: masker, location: .other("b"), params: &p), as: UTF8.self)
            #expect(!out.contains("AAA") && !out.contains("BBB"), "prefix \(cut) leaked: \(out)")
        }
        #expect(whole.map(\.name) == ["access_token", "nested", "n"])
        #expect(String(decoding: masked, as: UTF8.self).contains(#""refresh_token":"[masked refresh_token len=3"#))
    }
}

@Test func maskingAMaskedValueChangesNothing() {
    let m = Masker(fingerprinter: Fingerprinter(key: Array("idempotent".utf8)))
    let (once, param) = m.secret(kind: "code", value: "raw-code-123")
    let (twice, param2) = m.secret(kind: "code", value: once)
    #expect(twice == once && param2.fingerprint == param.fingerprint && param2.marker == param.marker)
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
    let (maskedJWT, jwtParam) = m.secret(kind: "id_token", value: jwt)
    let (again, againParam) = m.secret(kind: "id_token", value: maskedJWT)
    #expect(
        again == maskedJWT && againParam.fingerprint == jwtParam.fingerprint && againParam.marker == jwtParam.marker)
    #expect(
        m.marker(kind: "cookie", value: m.marker(kind: "cookie", value: "c00kie"))
            == m.marker(kind: "cookie", value: "c00kie"))
    var params: [OAuthParam] = []
    let header = m.maskHeaders(
        [HeaderField("Authorization", "Basic " + Data("app:s3cret".utf8).base64EncodedString())],
        location: .requestHeader, params: &params)
    var params2: [OAuthParam] = []
    let header2 = m.maskHeaders(header, location: .requestHeader, params: &params2)
    #expect(header2 == header && params2 == params)
}

/// The byte-level base64 decoders agree with Foundation's on every input the masker can meet.
@Test(arguments: [
    "", "YQ", "YWI", "YWJj", "YWJjZA==", "YWJjZA", "Y2xpZW50OkJBU0lDU0VDUkVU", "w7/Dvw==", "-_-_", "+/+/", "YWJjZ",
    "YW Jj",
])
func base64DecodersAgreeWithFoundation(_ text: String) {
    var t = text
    let standard = t.withUTF8 { JWT.base64StandardDecoded($0) }
    // Foundation wants padding; the masker also takes an unpadded Basic credential.
    let padded = text.utf8.count % 4 == 0 ? text : text + String(repeating: "=", count: (4 - text.utf8.count % 4) % 4)
    let foundation = Data(base64Encoded: padded).map { Array($0) }
    #expect(standard == foundation, "standard: \(text)")
    var u = text
    let url = u.withUTF8 { JWT.base64URLDecoded($0) }
    let fromURL =
        text.contains("=")
        ? nil
        : Data(base64Encoded: padded.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/"))
            .map { Array($0) }
    #expect(url == (text.contains("+") || text.contains("/") ? nil : fromURL), "url: \(text)")
}

/// The base64url encoder (PKCE's S256, RFC 7636 §4.2) against Foundation's, for every remainder.
@Test(arguments: [0, 1, 2, 3, 4, 5, 31, 32, 33, 64, 255])
func base64URLEncoderAgreesWithFoundation(_ count: Int) {
    let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ 251) }
    let foundation = Data(bytes).base64EncodedString()
        .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
            of: "=", with: "")
    #expect(JWT.base64URL(bytes) == foundation)
    var encoded = JWT.base64URL(bytes)
    #expect(encoded.withUTF8 { JWT.base64URLDecoded($0) } == bytes)
}

/// Form pairs: the text around each pair is kept byte for byte; only secret values change.
@Test(
    arguments: [
        ("a=b&", "a=b&", [("a", "b")]),
        ("&", "&", []),
        ("", "", []),
        ("=x", "=x", [("", "x")]),
        ("lonely", "lonely", []),
        ("a=1&&b=2", "a=1&&b=2", [("a", "1"), ("b", "2")]),
        (
            "co%64e=XYZ&state=s+1", "co%64e=[masked code len=3 fp=\(fp("XYZ"))]&state=s+1",
            [("code", "[masked code len=3 fp=\(fp("XYZ"))]"), ("state", "s 1")]
        ),
        (
            "code=&x=%zz", "code=[masked code len=0 fp=\(fp(""))]&x=%zz",
            [("code", "[masked code len=0 fp=\(fp(""))]"), ("x", "%zz")]
        ),
        (
            "password=p%26w=1", "password=[masked password len=5 fp=\(fp("p&w=1"))]",
            [("password", "[masked password len=5 fp=\(fp("p&w=1"))]")]
        ),
        (
            "é=ü&token=ÄÖ", "é=ü&token=[masked token len=4 fp=\(fp("ÄÖ"))]",
            [("é", "ü"), ("token", "[masked token len=4 fp=\(fp("ÄÖ"))]")]
        ),
    ] as [(String, String, [(String, String)])])
func formPairsMaskOnlySecretValues(_ input: String, _ expected: String, _ pairs: [(String, String)]) {
    var params: [OAuthParam] = []
    #expect(masker.maskPairs(Substring(input), location: .other("q"), params: &params) == expected)
    #expect(params.map(\.name) == pairs.map(\.0))
    #expect(params.map(\.value) == pairs.map(\.1))
}

/// JWT recognition: three base64url segments whose header is a JSON object naming `alg`.
@Test(
    arguments: [
        (sampleJWT, true),
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl", true),
        (JWT.base64URL(Array(#"{"typ":"JWT"}"#.utf8)) + ".eyJzdWIiOiJ1MSJ9.c2ln", false),
        (JWT.base64URL(Array(#"["alg"]"#.utf8)) + ".eyJzdWIiOiJ1MSJ9.c2ln", false),
        (JWT.base64URL(Array(#" {"alg":"RS256"}"#.utf8)) + ".eyJzdWIiOiJ1MSJ9.c2ln", false),
        (JWT.base64URL(Array(#"{ "alg" : "none" }"#.utf8)) + ".eyJzdWIiOiJ1MSJ9.", true),  // unsecured: empty signature
        (JWT.base64URL(Array(#"{ "alg" : "none" }"#.utf8)) + ".eyJzdWIiOiJ1MSJ9.c2ln", true),
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9", false),
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln.more", false),
        ("eyJhbGciOiJSUzI1NiJ9+.eyJzdWIiOiJ1MSJ9.c2ln", false),
        ("eyJhbGciOiJSUzI1NiJ9X.eyJzdWIiOiJ1MSJ9.c2ln", false),
        ("abc.def.ghi", false),
        // One byte outside base64url anywhere (payload, signature, last byte) and the token is not a JWT,
        // so no part of it is kept readable.
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIi OiJ1MSJ9.c2ln", false),
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2l=", false),
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln\u{0}", false),
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lné", false),
        ("eyJhbGciOiJSUzI1NiJ9..c2ln", false),
    ] as [(String, Bool)])
func jwtRecognition(_ token: String, _ isJWT: Bool) {
    #expect(JWT.looksLikeJWT(token) == isJWT)
}

/// Padding in the middle, or nothing but padding, is refused (Foundation decodes both to something);
/// the Basic credential is then masked whole.
@Test(arguments: ["YW=j", "====", "YQ=", "Y==="])
func base64RefusesMisplacedPadding(_ text: String) {
    var t = text
    #expect(t.withUTF8 { JWT.base64StandardDecoded($0) } == nil)
    var params: [OAuthParam] = []
    let masked = masker.maskHeaders(
        [HeaderField("Authorization", "Basic \(text)")], location: .requestHeader, params: &params)
    #expect(masked[0].value == "Basic [masked basic-credentials len=\(text.utf8.count) fp=\(fp(text))]")
}

/// `decodeSegment` (JWT parts, JWK members) takes base64url, the standard alphabet and padding alike.
@Test(
    arguments: [
        ("eyJhbGciOiJSUzI1NiJ9", #"{"alg":"RS256"}"#),
        ("eyJhbGciOiJSUzI1NiJ9==", #"{"alg":"RS256"}"#),
        ("w7_Dvw", "ÿÿ"), ("w7/Dvw==", "ÿÿ"), ("", ""),
    ] as [(String, String)])
func segmentsDecodeInEitherAlphabet(_ segment: String, _ text: String) {
    #expect(JWT.decodeSegment(segment).map { String(decoding: $0, as: UTF8.self) } == text)
}

@Test func segmentsOutsideTheAlphabetDoNotDecode() {
    #expect(JWT.decodeSegment("eyJ hbGci") == nil)
    #expect(JWT.decodeSegment("eyJhb") == nil)
    #expect(JWT.decodeSegment("[masked id_token-signature len=10 fp=abc]") == nil)
}

/// Credential headers in any case, with a secret in the shape that header carries it: the secret is
/// gone after masking. The names come from real APIs (Azure APIM, Google Cloud, AWS STS, OAuth 2 proxies).
@Test(
    arguments: [
        ("Authorization", "Bearer HDRSECRET1"), ("Proxy-Authorization", "Basic SERSRVNFQ1JFVDE="),
        ("Cookie", "a=HDRSECRET1"), ("Set-Cookie", "a=HDRSECRET1; Path=/"),
        ("Location", "https://app/cb?code=HDRSECRET1"), ("Referer", "https://app/cb#access_token=HDRSECRET1"),
        ("Content-Location", "/x?token=HDRSECRET1"), ("Refresh", "0; url=/cb?code=HDRSECRET1"),
        ("X-Api-Key", "HDRSECRET1"), ("X-AUTH-TOKEN", "HDRSECRET1"), ("private-token", "HDRSECRET1"),
        ("Api-Key", "HDRSECRET1"),
        ("DPoP", "HDRSECRET1"), ("X-Amz-Security-Token", "HDRSECRET1"), ("Ocp-Apim-Subscription-Key", "HDRSECRET1"),
        ("X-Goog-Api-Key", "HDRSECRET1"), ("X-Forwarded-Access-Token", "HDRSECRET1"), ("x-csrf-token", "HDRSECRET1"),
        ("Authorization", "DPoP HDRSECRET1"), ("X-Client-Secret", "HDRSECRET1"),
        ("set-cookie", "__Host-sid=HDRSECRET1"),
    ] as [(String, String)])
func everyMaskedHeaderLosesItsSecret(_ name: String, _ value: String) {
    var params: [OAuthParam] = []
    let out = masker.maskHeaders(
        [HeaderField("Accept", "*/*"), HeaderField(name, value)], location: .requestHeader, params: &params)
    #expect(out[0] == HeaderField("Accept", "*/*"))
    #expect(
        out[1].name == name && !out[1].value.contains("HDRSECRET1") && !out[1].value.contains("SERSRVNFQ1JFVDE"),
        "\(name): \(out[1].value)")
}

/// Content types are matched in any ASCII case, without a lower-cased copy.
@Test(
    arguments: [
        ("application/json", true), ("Application/JSON; charset=utf-8", true), ("application/jwk-set+json", true),
        ("application/jso", false), ("", false), ("text/plain", false), ("JSON", true), ("ＪＳＯＮ", false),
    ] as [(String, Bool)])
func contentTypeMatchingIgnoresASCIICase(_ type: String, _ isJSON: Bool) {
    #expect(type.utf8ContainsASCIICaseInsensitive("json") == isJSON)
    #expect(type.utf8ContainsASCIICaseInsensitive("") == true)
}

/// Secret names in any case, including Unicode case folding onto one (the Kelvin sign K folds to k).
@Test(
    arguments: [
        ("code", true), ("CODE", true), ("Client_Secret", true), ("to\u{212A}en", true), ("token", true),
        ("codec", false), ("cod", false), ("", false), ("state", false), ("code_challenge", false), ("tökén", false),
        ("access_token", true), ("ACCESS_TOKEN", true), ("access-token", true), ("idToken", true),
        ("AccessToken", true),
        ("token_type", false), ("token_endpoint", false), ("error_code", false), ("client_id", false), ("nonce", false),
    ] as [(String, Bool)])
func secretNamesInAnyCase(_ name: String, _ secret: Bool) {
    #expect(Masker.isSecret(name) == secret)
}

@Test func everyExampleNameIsSecret() {
    for family in SecretFamily.all {
        for name in family.examples {
            #expect(SecretNames.family(of: name)?.id == family.id, "\(name)")
            #expect(Masker.isSecret(name.uppercased()), "\(name)")
        }
    }
}

/// The per-name cache gives the answer `classify` gives, for names seen once, seen again, and after a flood of
/// distinct names has emptied it.
@Test func cachedNameAnswersMatchClassification() {
    let long = "x-" + String(repeating: "a", count: 200) + "-token"
    let names =
        SecretFamily.all.flatMap(\.examples)
        + ["token_type", "state", "wsse:UsernameToken", long, "pass\u{301}word", "user%5Bpassword%5D"]
    for round in 0..<2 {
        for name in names {
            #expect(
                SecretNames.family(of: name)?.id == SecretNames.classify(name).map { SecretFamily.all[$0].id },
                "\(name) round \(round)")
        }
    }
    for i in 0..<5_000 { _ = SecretNames.isSecret("field_\(i)") }
    for name in names {
        #expect(SecretNames.family(of: name)?.id == SecretNames.classify(name).map { SecretFamily.all[$0].id })
    }
}

/// A small cache over a counting classifier: a repeated name is classified once, a non-ASCII or long one
/// every time, and a flood past the limit empties the cache instead of growing it.
@Test func nameCacheKeepsOnlyWhatItMayAndStaysBounded() {
    let cache = NameCache<String, Int>(limit: 8, maximumLength: 16)
    var calls = 0
    let count: (String) -> Int = {
        calls += 1; return $0.utf8.count
    }
    #expect(cache.value(for: "x-request-id", compute: count) == 12)
    #expect(cache.value(for: "x-request-id", compute: count) == 12)
    #expect(calls == 1)
    _ = cache.value(for: "pass\u{301}word", compute: count)
    _ = cache.value(for: "pass\u{301}word", compute: count)
    _ = cache.value(for: String(repeating: "a", count: 17), compute: count)
    _ = cache.value(for: String(repeating: "a", count: 17), compute: count)
    #expect(calls == 5)
    for i in 0..<8 { _ = cache.value(for: "f\(i)", compute: count) }
    calls = 0
    #expect(cache.value(for: "x-request-id", compute: count) == 12)
    #expect(calls == 1, "the ninth distinct name empties the cache")
}

@Test func sweepExemptionsAnswerTheSameFromTheCache() {
    let names = [
        "ETag", "x-request-id", "X-Amzn-Trace-Id", "client_id", "commit_sha", "access_token", "note",
        "traceparent", "state", "password",
    ]
    let first = names.map { SweepExemptions.exempt($0) }
    #expect(first == [true, true, true, true, true, false, false, true, true, false])
    for i in 0..<5_000 { _ = SweepExemptions.exempt("header_\(i)") }
    #expect(names.map { SweepExemptions.exempt($0) } == first)
}

/// Fingerprints are the first 6 bytes of HMAC-SHA256 in lower-case hex.
@Test func fingerprintIsTruncatedHMACInHex() {
    let key = Array("fingerprint-test-key".utf8)
    let value = "SplxlOBeZQQYbYS6WxSbIA"
    let mac = HMAC<SHA256>.authenticationCode(for: Array(value.utf8), using: SymmetricKey(data: key))
    let expected = mac.prefix(6).map { String(format: "%02x", $0) }.joined()
    #expect(Fingerprinter(key: key).fingerprint(value) == expected)
    #expect(Fingerprinter(key: key).fingerprint("") != Fingerprinter(key: key).fingerprint(" "))
}

/// The marker is spelled exactly `[masked KIND len=N fp=HEX]` for any length and kind.
@Test(
    arguments: [
        ("code", 0, "0123456789ab"), ("access_token", 9, "ffffffffffff"), ("refresh_token-signature", 10, "abc"),
        ("cookie", 12345, ""), ("x-api-key", Int.max, "00"),
    ] as [(String, Int, String)])
func markerTextSpelling(_ kind: String, _ length: Int, _ fp: String) {
    #expect(Masker.markerText(kind: kind, length: length, fingerprint: fp) == "[masked \(kind) len=\(length) fp=\(fp)]")
}

/// A kind from a JSON key or header may hold any bytes; the marker's kind keeps only `[A-Za-z0-9_.-]`,
/// so every marker parses back as one.
@Test(arguments: [("ключ", "________"), ("", "secret"), ("my secret]", "my_secret_"), ("a[b]", "a_b_")])
func markerKindsAreSanitised(_ kind: String, _ spelled: String) {
    let marker = Masker.markerText(kind: kind, length: 3, fingerprint: "0123456789ab")
    #expect(marker == "[masked \(spelled) len=3 fp=0123456789ab]")
    #expect(Masker.alreadyMasked(marker)?.fingerprint == "0123456789ab")
}

/// Only a value that is exactly one whole marker counts as masked: text around a marker is a raw value.
@Test(
    arguments: [
        ("[masked code len=3 fp=0123456789ab]", true), ("[masked code len=3 fp=0123456789ab]RAW", false),
        ("RAW[masked code len=3 fp=0123456789ab]", false), ("[masked code len=3 fp=0123456789ab] ", false),
        ("[masked code len=x fp=0123456789ab]", false), ("[masked code len=3 fp=]", false),
        ("[masked code len=3 fp=zz]", false), ("[masked  len=3 fp=ab]", false),
        ("[masked code len=3 fp=ab] [x]", false),
    ] as [(String, Bool)])
func onlyWholeMarkersAreAlreadyMasked(_ value: String, _ masked: Bool) {
    #expect((Masker.alreadyMasked(value) != nil) == masked)
    let out = masker.mask(kind: "code", value: value)
    #expect(masked ? out == value : !out.contains("RAW"))
}

/// Header names are secret by their words, in any case and spelling.
@Test(
    arguments: [
        ("X-Api-Key", true), ("x_api_key", true), ("XAPIKEY", true), ("X-Auth-Token", true),
        ("Ocp-Apim-Subscription-Key", true),
        ("Content-Type", false), ("Host", false), ("", false), ("Accept-Encoding", false), ("X-Request-Id", false),
        ("Token-Type", false), ("WWW-Authenticate", false), ("Cache-Control", false),
    ] as [(String, Bool)])
func headerNamesAreSecretByTheirWords(_ name: String, _ expected: Bool) {
    #expect(SecretNames.isSecret(name) == expected, "\(name)")
}

/// Byte-wise ASCII case folding: letters only (`@` and `` ` ``, `[` and `{` differ by 0x20 too, and are not equal).
@Test(
    arguments: [
        ("Code", "code", true), ("CODE", "code", true), ("code", "code", true), ("", "", true),
        ("@", "`", false), ("[", "{", false), ("cod", "code", false), ("codf", "code", false),
        ("to\u{212A}en", "token", false), ("ÄÖ", "äö", false), ("x-api-key", "X-API-KEY", true),
        (String(repeating: "a", count: 300), String(repeating: "A", count: 300), true),
    ] as [(String, String, Bool)])
func asciiCaseInsensitiveEquality(_ a: String, _ b: String, _ equal: Bool) {
    #expect(a.asciiCaseInsensitiveEquals(b) == equal)
    #expect(b.asciiCaseInsensitiveEquals(a) == equal)
    // Through a Substring (StringProtocol's other conformer) it compares the same way.
    #expect(("<" + a + ">").dropFirst().dropLast().asciiCaseInsensitiveEquals(b) == equal)
}

/// Long names are split into words like any other.
@Test func longNamesAreClassifiedByTheirWords() {
    #expect(!Masker.isSecret(String(repeating: "code", count: 100)))
    #expect(Masker.isSecret(String(repeating: "x_", count: 100) + "token"))
}

@Test func headersWithNothingToMaskAreReturnedAsTheyCame() {
    var params: [OAuthParam] = []
    let headers = [HeaderField("Content-Type", "application/json"), HeaderField("Cache-Control", "no-store")]
    #expect(masker.maskHeaders(headers, location: .response, params: &params) == headers)
    #expect(params.isEmpty)
}

/// The raw `code_verifier` read back from the query or form body (in memory only, for S256): the
/// first pair of that name, its name matched escaped or not, its value form-decoded.
@Test(
    arguments: [
        ("/token", "grant_type=authorization_code&code_verifier=V1", "V1"),
        ("/token?code_verifier=Q1", "code_verifier=B1", "Q1"),
        ("/token", "a=1&&code_verifie=x&code_verifier=V%2D1+2&code_verifier=later", "V-1 2"),
        ("/token", "code%5Fverifier=E1", "E1"),
        ("/token", "code_verifier", nil),
        ("/token", "xcode_verifier=no&code_verifierx=no", nil),
        ("/token#code_verifier=F", "", nil),
    ] as [(String, String, String?)])
func rawParameterValue(_ target: String, _ form: String, _ expected: String?) {
    var e = Exchange(
        connectionID: 1, clientAddress: "c", scheme: .https, host: "h", port: 443, method: "POST", target: target,
        start: Date())
    e.requestBody = CapturedBody(bytes: Array(form.utf8), size: form.utf8.count)
    #expect(Masker.rawValue(named: "code_verifier", in: e) == expected)
}

/// A Basic credential is split at its first colon (the secret may hold more) and each half is form-decoded.
@Test(
    arguments: [
        ("app:s3cret", "app", "s3cret"),
        ("app:pa:ss:word", "app", "pa:ss:word"),
        ("my%20app:a%2Bb+c", "my app", "a+b c"),
        (":only-secret", "", "only-secret"),
        ("Zoë:ünïcode", "Zoë", "ünïcode"),
    ] as [(String, String, String)])
func basicCredentialSplit(_ credential: String, _ user: String, _ secret: String) {
    var params: [OAuthParam] = []
    let masked = masker.maskHeaders(
        [HeaderField("Authorization", "  Basic   " + Data(credential.utf8).base64EncodedString() + " ")],
        location: .requestHeader, params: &params)
    #expect(masked[0].value == "Basic \(user):[masked client_secret len=\(secret.utf8.count) fp=\(fp(secret))]")
    #expect(params.first { $0.name == "client_id" }?.value == user)
    #expect(params.first { $0.name == "client_secret" }?.fingerprint == fp(secret))
}

/// Basic credentials that do not decode to UTF-8 text with a colon are masked whole.
@Test(arguments: ["bm9jb2xvbg==", "/w==", "////"])
func basicCredentialWithoutUserIsMaskedWhole(_ encoded: String) {
    var params: [OAuthParam] = []
    let masked = masker.maskHeaders(
        [HeaderField("Authorization", "Basic " + encoded)], location: .requestHeader, params: &params)
    #expect(masked[0].value == "Basic [masked basic-credentials len=\(encoded.utf8.count) fp=\(fp(encoded))]")
    #expect(params.isEmpty)
}

/// Clean header values are remembered; a value with a secret shape is masked every time it comes, under any
/// header name, and a remembered clean value never hides a secret sent under another name.
@Test func repeatedHeadersAreMaskedEveryTime() {
    let token = "ghp_" + String(repeating: "aB3dE5fG7h", count: 3) + "123456"
    let headers = [
        HeaderField("User-Agent", "curl/7.88.1"), HeaderField("X-Debug", "token " + token),
        HeaderField("Content-Type", "application/json;charset=UTF-8"),
    ]
    for _ in 0..<3 {
        var params: [OAuthParam] = []
        let out = masker.maskHeaders(headers, location: .requestHeader, params: &params)
        #expect(out[0].value == "curl/7.88.1")
        #expect(!out[1].value.contains(token) && out[1].value.contains("[masked"), "\(out[1].value)")
        #expect(out[2].value == "application/json;charset=UTF-8")
    }
    // The same bytes split differently between name and value are another key.
    var params: [OAuthParam] = []
    let shifted = masker.maskHeaders(
        [HeaderField("X-Debug-token", " " + token)], location: .requestHeader,
        params: &params)
    #expect(!shifted[0].value.contains(token))
}
