import AuthtapAnalyzer
import AuthtapModel
import AuthtapOAuth
import Foundation
import Testing

// MARK: fixture builder: raw exchanges go through the real masker, as in capture.

let masker = Masker(fingerprinter: Fingerprinter(key: Array("analyzer-test-key".utf8)))
let t0 = Date(timeIntervalSince1970: 1_800_000_000)

struct Flow {
    var exchanges: [Exchange] = []

    @discardableResult
    mutating func add(
        _ method: String, _ url: String, at seconds: Double = 0, status: Int? = 200,
        request: [(String, String)] = [], body: String = "",
        response: [(String, String)] = [("Content-Type", "application/json")], responseBody: String = "",
        error: ErrorKind? = nil, tlsFailure: TLSFailureReason? = nil
    ) -> Int64 {
        let u = URLComponents(string: url)!
        let target = u.percentEncodedPath + (u.percentEncodedQuery.map { "?" + $0 } ?? "")
        var e = Exchange(
            connectionID: UInt64(exchanges.count + 1), clientAddress: "127.0.0.1:5000", scheme: .https,
            host: u.host!, port: u.port ?? 443, method: method, target: target, start: t0.addingTimeInterval(seconds))
        e.status = status
        e.requestHeaders = request.map { HeaderField($0.0, $0.1) }
        if !body.isEmpty, !request.contains(where: { $0.0.lowercased() == "content-type" }) {
            e.requestHeaders.append(HeaderField("Content-Type", "application/x-www-form-urlencoded"))
        }
        e.requestBody = CapturedBody(bytes: Array(body.utf8), size: body.utf8.count)
        e.responseHeaders = status == nil ? [] : response.map { HeaderField($0.0, $0.1) }
        e.responseBody = CapturedBody(bytes: Array(responseBody.utf8), size: responseBody.utf8.count)
        e.error = error
        e.tlsFailure = tlsFailure
        e.timings.end = 12
        var recorded = masker.record(e)
        recorded.id = Int64(exchanges.count + 1)
        exchanges.append(recorded)
        return recorded.id!
    }

    func analyze() -> Analysis { Analyzer().analyze(exchanges) }
}

func b64url(_ s: String) -> String { JWT.base64URL(Array(s.utf8)) }
func jwt(header: String = #"{"alg":"RS256","kid":"k1"}"#, claims: String) -> String {
    "\(b64url(header)).\(b64url(claims)).c2lnbmF0dXJlc2lnbmF0dXJl"
}
func s256(_ verifier: String) -> String {
    // Same derivation the capture path uses.
    var e = Exchange(
        connectionID: 1, clientAddress: "x", scheme: .https, host: "as", port: 443, method: "POST", target: "/t",
        start: t0)
    e.requestHeaders = [HeaderField("Content-Type", "application/x-www-form-urlencoded")]
    let body = "grant_type=authorization_code&code=c&code_verifier=\(verifier)"
    e.requestBody = CapturedBody(bytes: Array(body.utf8), size: body.utf8.count)
    return masker.record(e).oauthParams.first { $0.name == "code_verifier_s256" }!.value
}

let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  // RFC 7636 Appendix B
let client = "https://app.example"
let asBase = "https://as.example"

/// A healthy authorization-code + PKCE flow; each step can be overridden.
func healthyFlow(
    code: String = "CODE-1", state: String = "st-1", callbackState: String? = nil, tokenDelay: Double = 1,
    tokenRedirect: String = "https://app.example/cb", tokenVerifier: String? = verifier,
    tokenStatus: Int = 200, tokenResponse: String? = nil
) -> (Flow, [Int64]) {
    var f = Flow()
    let a = f.add(
        "GET",
        "\(asBase)/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=\(state)&nonce=n-1&scope=openid%20profile%20offline_access&code_challenge=\(challenge)&code_challenge_method=S256",
        status: 302, response: [("Location", "https://app.example/cb?code=\(code)&state=\(state)")])
    let c = f.add(
        "GET", "\(client)/cb?code=\(code)&state=\(callbackState ?? state)", at: 0.5,
        response: [("Content-Type", "text/html")], responseBody: "<html>ok</html>")
    let idToken = jwt(
        claims:
            #"{"iss":"https://as.example","aud":"app1","sub":"u1","nonce":"n-1","iat":1800000001,"exp":1800003600,"jti":"\#(code)"}"#
    )
    let body =
        "grant_type=authorization_code&code=\(code)&redirect_uri=\(tokenRedirect.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&client_id=app1"
        + (tokenVerifier.map { "&code_verifier=\($0)" } ?? "")
    let t = f.add(
        "POST", "\(asBase)/token", at: tokenDelay, status: tokenStatus, body: body,
        response: [("Content-Type", "application/json"), ("Date", "Fri, 15 Jan 2027 08:00:01 GMT")],
        responseBody: tokenResponse
            ?? #"{"access_token":"AT-\#(code)","token_type":"Bearer","expires_in":3600,"refresh_token":"RT-\#(code)","scope":"openid profile offline_access","id_token":"\#(idToken)"}"#
    )
    let u = f.add(
        "GET", "\(asBase)/userinfo", at: tokenDelay + 0.2, request: [("Authorization", "Bearer AT-\(code)")],
        responseBody: #"{"sub":"u1"}"#)
    return (f, [a, c, t, u])
}

func rules(_ a: Analysis, _ severity: Severity? = nil) -> [String] {
    a.findings.filter { severity == nil || $0.severity == severity }.map(\.rule.rawValue)
}

// MARK: transactions

@Test func healthyFlowIsOneOkTransactionWithNoFindings() {
    let (flow, ids) = healthyFlow()
    let a = flow.analyze()
    #expect(a.findings.isEmpty, "\(a.findings.map(\.title))")
    #expect(a.transactions.count == 1)
    #expect(a.transactions[0].outcome == "ok")
    #expect(a.transactions[0].members.map(\.exchange) == ids)
    #expect(a.transactions[0].members.map(\.leg) == [.authorize, .callback, .token, .userinfo])
    #expect(a.transactions[0].clientID == "app1")
    #expect(a.transactions[0].serverHost == "as.example")
}

@Test func refreshChainJoinsTheTransactionAndHealthyRotationIsClean() {
    var (flow, _) = healthyFlow()
    flow.add(
        "POST", "\(asBase)/token", at: 100, body: "grant_type=refresh_token&refresh_token=RT-CODE-1&client_id=app1",
        responseBody: #"{"access_token":"AT-2","token_type":"Bearer","expires_in":3600,"refresh_token":"RT-2"}"#)
    flow.add(
        "POST", "\(asBase)/token", at: 200, body: "grant_type=refresh_token&refresh_token=RT-2&client_id=app1",
        responseBody: #"{"access_token":"AT-3","token_type":"Bearer","expires_in":3600,"refresh_token":"RT-3"}"#)
    let a = flow.analyze()
    #expect(a.findings.isEmpty, "\(a.findings.map(\.title))")
    #expect(a.transactions.count == 1)
    #expect(a.transactions[0].members.map(\.leg).suffix(2) == [.refresh, .refresh])
}

@Test func tokenRequestWithoutAuthorizeLegStillFormsATransaction() {
    var f = Flow()
    f.add(
        "POST", "\(asBase)/token", body: "grant_type=client_credentials&client_id=svc&client_secret=S3CRET",
        responseBody: #"{"access_token":"AT","token_type":"Bearer","expires_in":60}"#)
    let a = f.analyze()
    #expect(a.transactions.count == 1)
    #expect(a.transactions[0].grantType == "client_credentials")
    #expect(a.findings.isEmpty)
}

// MARK: rules, a positive and a near miss each

@Test func codeReuseNearSimultaneousIsTheDoubleRenderPattern() throws {
    var (flow, ids) = healthyFlow()
    let second = flow.add(
        "POST", "\(asBase)/token", at: 1.3, status: 400,
        body:
            "grant_type=authorization_code&code=CODE-1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&client_id=app1&code_verifier=\(verifier)",
        responseBody: #"{"error":"invalid_grant","error_description":"code already used"}"#)
    let a = flow.analyze()
    let f = try #require(a.findings.first { $0.rule == "code-reuse" })
    #expect(f.severity == .error)
    #expect(f.title.contains("double render"))
    #expect(f.exchanges == [ids[2], second])
    #expect(f.evidence["succeeded"] == "#\(ids[2])")
    #expect(f.fix.contains("StrictMode"))
    #expect(f.evidence["code"]?.hasPrefix("[masked code len=6 fp=") == true)
    #expect(rules(a, .error) == ["code-reuse"])
    #expect(a.transactions.count == 1)
}

@Test func codeReuseAfterAGapIsAReplayNotADoubleRender() throws {
    var (flow, _) = healthyFlow()
    flow.add(
        "POST", "\(asBase)/token", at: 40, status: 400,
        body:
            "grant_type=authorization_code&code=CODE-1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&client_id=app1&code_verifier=\(verifier)",
        responseBody: #"{"error":"invalid_grant"}"#)
    let f = try #require(flow.analyze().findings.first { $0.rule == "code-reuse" })
    #expect(!f.title.contains("double render"))
    #expect(f.evidence["gap"] == "39 s")
}

@Test func differentCodesAreNotReuse() {
    var (flow, _) = healthyFlow()
    let (other, _) = healthyFlow(code: "CODE-2", state: "st-2")
    for e in other.exchanges { var e = e; e.id = e.id! + 10; flow.exchanges.append(e) }
    let a = flow.analyze()
    #expect(!rules(a).contains("code-reuse"))
    #expect(a.transactions.count == 2)
}

@Test func codeExpiredReportsTheGapAndAShortGapDoesNot() throws {
    let (late, _) = healthyFlow(
        tokenDelay: 700, tokenStatus: 400,
        tokenResponse: #"{"error":"invalid_grant","error_description":"invalid code"}"#)
    let f = try #require(late.analyze().findings.first { $0.rule == "code-expired" })
    #expect(f.evidence["gap"] == "11.7 min")
    let (quick, _) = healthyFlow(
        tokenDelay: 1, tokenStatus: 400, tokenResponse: #"{"error":"invalid_grant","error_description":"invalid code"}"#
    )
    // The whole flow in view, and every other cause ruled out: expiry is the verdict, by elimination.
    let a = quick.analyze()
    let verdict = try #require(a.findings.first { $0.rule == "code-expired" })
    #expect(!rules(a).contains("invalid-grant"))
    #expect(verdict.title.contains("only cause"))
    let statuses = Dictionary(uniqueKeysWithValues: (verdict.candidates ?? []).map { ($0.cause, $0.status) })
    #expect(statuses["code-expired"] == .unknown)
    for cause in ["code-reuse", "redirect-uri-mismatch", "pkce-mismatch", "invalid-client", "wrong-endpoint"] {
        #expect(statuses[cause] == .ruledOut, "\(cause)")
    }
    // The token request alone: the causes stay open, and the finding says what would decide.
    var alone = Flow()
    alone.add(
        "POST", "\(asBase)/token", status: 400,
        body: "grant_type=authorization_code&code=CODE-9&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&client_id=app1",
        responseBody: #"{"error":"invalid_grant"}"#)
    let open = try #require(alone.analyze().findings.first { $0.rule == "invalid-grant" })
    #expect(open.rootCause == true)
    #expect((open.candidates ?? []).filter { $0.status == .unknown }.count >= 4)
    #expect(open.evidence["to_decide"]?.contains("/authorize") == true)
}

@Test func stateMismatchAndMissingStateOnTheCallback() throws {
    let (flow, _) = healthyFlow(callbackState: "st-OTHER")
    let f = try #require(flow.analyze().findings.first { $0.rule == "state-mismatch" })
    #expect(f.severity == .error)
    #expect(f.evidence["sent_state"] == "st-1")
    #expect(f.evidence["callback_state"] == "st-OTHER")
    #expect(!rules(healthyFlow().0.analyze()).contains("state-mismatch"))
}

@Test func authorizeWithoutStateOrPKCEIsAWarning() throws {
    var f = Flow()
    f.add(
        "GET", "\(asBase)/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
        status: 302,
        response: [("Location", "https://app.example/cb?code=X")])
    let finding = try #require(f.analyze().findings.first { $0.rule == "state-mismatch" })
    #expect(finding.severity == .warning)
}

struct NonJSONCase: Sendable, CustomStringConvertible {
    var name: String
    var status: Int
    var contentType: String
    var body: String
    var severity: Severity?
    var titleContains: String
    var description: String { name }
}

@Test(arguments: [
    NonJSONCase(
        name: "login page", status: 200, contentType: "text/html",
        body: "<html><head><title>Sign in - Example</title></head><form><input type=\"password\"></form></html>",
        severity: .error, titleContains: "login page"),
    NonJSONCase(
        name: "WAF", status: 403, contentType: "text/html", body: "<html><title>Just a moment...</title>cf-chl</html>",
        severity: .error, titleContains: "WAF/CDN"),
    NonJSONCase(
        name: "5xx page", status: 502, contentType: "text/html", body: "<html><title>502 Bad Gateway</title></html>",
        severity: .error, titleContains: "502 error page"),
    NonJSONCase(
        name: "GitHub form", status: 200, contentType: "application/x-www-form-urlencoded; charset=utf-8",
        body: "access_token=gho_x&scope=repo&token_type=bearer", severity: .warning, titleContains: "Form-encoded"),
    NonJSONCase(
        name: "text/plain", status: 200, contentType: "text/plain", body: "OK then", severity: .error,
        titleContains: "text/plain"),
    NonJSONCase(
        name: "empty", status: 200, contentType: "application/json", body: "", severity: .error, titleContains: "Empty"),
    NonJSONCase(
        name: "malformed", status: 200, contentType: "application/json", body: #"{"access_token": "a", token_type: 1}"#,
        severity: .error, titleContains: "Malformed"),
    NonJSONCase(
        name: "truncated", status: 200, contentType: "application/json", body: #"{"access_token": "a", "tok"#,
        severity: .error, titleContains: "Truncated"),
    NonJSONCase(
        name: "wrong content type", status: 200, contentType: "text/plain",
        body: #"{"access_token":"a","token_type":"Bearer","expires_in":60}"#, severity: .warning,
        titleContains: "JSON served"),
    NonJSONCase(
        name: "missing token_type", status: 200, contentType: "application/json",
        body: #"{"access_token":"a","expires_in":"3600"}"#, severity: .error,
        titleContains: "no token_type; expires_in is the string"),
    NonJSONCase(
        name: "error with 200", status: 200, contentType: "application/json", body: #"{"error":"invalid_grant"}"#,
        severity: .warning, titleContains: "HTTP 200"),
    NonJSONCase(
        name: "healthy", status: 200, contentType: "application/json",
        body: #"{"access_token":"a","token_type":"Bearer","expires_in":60}"#, severity: nil, titleContains: ""),
])
func nonJSONResponses(_ c: NonJSONCase) {
    var f = Flow()
    f.add(
        "POST", "\(asBase)/token", status: c.status,
        body: "grant_type=client_credentials&client_id=svc&client_secret=s",
        response: [("Content-Type", c.contentType)], responseBody: c.body)
    let found = f.analyze().findings.filter { $0.rule == "non-json-response" }
    if let severity = c.severity {
        #expect(
            found.contains { $0.severity == severity && $0.title.contains(c.titleContains) }, "\(found.map(\.title))")
    } else {
        #expect(found.isEmpty, "\(found.map(\.title))")
    }
}

@Test func malformedJSONGivesTheParserOffset() throws {
    var f = Flow()
    f.add(
        "POST", "\(asBase)/token", body: "grant_type=client_credentials&client_id=svc&client_secret=s",
        responseBody: #"{"token_type": "Bearer", expires_in: 1}"#)
    let finding = try #require(f.analyze().findings.first { $0.rule == "non-json-response" })
    #expect(finding.evidence["offset"] == "25")
}

@Test func htmlTitleIsReported() throws {
    var f = Flow()
    f.add(
        "POST", "\(asBase)/token", status: 404, body: "grant_type=client_credentials&client_id=svc&client_secret=s",
        response: [("Content-Type", "text/html")], responseBody: "<html><head><title>Not Found</title></head></html>")
    let finding = try #require(f.analyze().findings.first { $0.rule == "non-json-response" })
    #expect(finding.evidence["title"] == "Not Found")
}

@Test(arguments: [
    TLSFailureReason.untrustedIssuer, .expired, .notYetValid, .hostnameMismatch, .protocolVersion,
    .closedDuringHandshake,
    .handshakeTimeout,
])
func tlsFaultsAreClassified(_ reason: TLSFailureReason) throws {
    var f = Flow()
    f.add(
        "POST", "\(asBase)/token", status: nil, body: "grant_type=client_credentials&client_id=svc&client_secret=s",
        error: .upstreamTLS, tlsFailure: reason)
    let finding = try #require(f.analyze().findings.first { $0.rule == "tls-fault" })
    #expect(finding.evidence["reason"] == reason.rawValue)
    #expect(finding.severity == .error)
}

@Test func clientRejectingTheCAIsExplainedWithTrustSteps() throws {
    var f = Flow()
    f.add("CONNECT", "https://as.example/", status: nil, error: .clientTLS)
    let finding = try #require(
        Analyzer(caPath: "/x/certs/authtap-ca.pem").analyze(f.exchanges).findings.first { $0.rule == "tls-fault" })
    #expect(finding.fix.contains("keytool -importcert"))
    #expect(finding.fix.contains("/x/certs/authtap-ca.pem"))
    #expect(finding.fix.contains("authtap env"))
}

/// A client that stalls in the handshake is not a client that distrusts the CA.
@Test func aClientHandshakeTimeoutIsNotBlamedOnTheCA() throws {
    var f = Flow()
    f.add("CONNECT", "https://as.example/", status: nil, error: .clientTLS, tlsFailure: .handshakeTimeout)
    let finding = try #require(f.analyze().findings.first { $0.rule == "tls-fault" })
    #expect(finding.title == "The client did not finish the TLS handshake in time")
    #expect(finding.severity == .warning)
    #expect(!finding.fix.contains("keytool"))
}

struct RedirectCase: Sendable, CustomStringConvertible {
    var token: String
    var status: Int
    var difference: String?
    var description: String { token }
}

@Test(arguments: [
    RedirectCase(token: "https://app.example/cb/", status: 400, difference: "a trailing slash (/cb vs /cb/)"),
    RedirectCase(token: "http://app.example/cb", status: 400, difference: "scheme (https vs http)"),
    RedirectCase(token: "https://app.example:8443/cb", status: 400, difference: "port (default vs 8443)"),
    RedirectCase(token: "https://app.example/CB", status: 400, difference: "path case (/cb vs /CB)"),
    RedirectCase(token: "https://other.example/cb", status: 400, difference: "host (app.example vs other.example)"),
    RedirectCase(token: "https://app.example/cb", status: 200, difference: nil),
])
func redirectURIDifferences(_ c: RedirectCase) {
    let (flow, _) = healthyFlow(
        tokenRedirect: c.token, tokenStatus: c.status,
        tokenResponse: c.status == 200 ? nil : #"{"error":"invalid_grant","error_description":"redirect_uri mismatch"}"#
    )
    let found = flow.analyze().findings.filter { $0.rule == "redirect-uri-mismatch" }
    if let difference = c.difference {
        #expect(found.first?.evidence["difference"] == difference, "\(found.map(\.evidence))")
    } else {
        #expect(found.isEmpty)
    }
}

@Test func redirectQueryCaseDifferenceAcceptedByTheServerIsNotAMismatch() {
    var (flow, _) = healthyFlow()
    // Authorize with ?x=A, token with ?x=a, and the server issued tokens.
    flow = Flow()
    flow.add(
        "GET",
        "\(asBase)/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fx%3DA&state=s&code_challenge=\(challenge)&code_challenge_method=S256",
        status: 302, response: [("Location", "https://app.example/cb?x=A&code=C9&state=s")])
    flow.add(
        "POST", "\(asBase)/token", at: 1,
        body:
            "grant_type=authorization_code&code=C9&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fx%3Da&client_id=app1&code_verifier=\(verifier)",
        responseBody: #"{"access_token":"AT","token_type":"Bearer","expires_in":60}"#)
    #expect(!rules(flow.analyze()).contains("redirect-uri-mismatch"))
}

@Test func pkceS256IsCheckedAgainstTheChallenge() throws {
    #expect(s256(verifier) == challenge)
    let (bad, _) = healthyFlow(
        tokenVerifier: "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFy", tokenStatus: 400,
        tokenResponse: #"{"error":"invalid_grant"}"#)
    let f = try #require(bad.analyze().findings.first { $0.rule == "pkce-mismatch" })
    #expect(f.title.contains("does not match"))
    #expect(f.evidence["code_challenge"] == challenge)
    #expect(f.evidence["S256(code_verifier)"] != challenge)
    #expect(f.evidence["code_verifier"]?.hasPrefix("[masked code_verifier len=48") == true)
    #expect(!rules(bad.analyze()).contains("invalid-grant"), "a specific cause must win over the generic rule")
    let (missing, _) = healthyFlow(tokenVerifier: nil, tokenStatus: 400, tokenResponse: #"{"error":"invalid_grant"}"#)
    #expect(missing.analyze().findings.contains { $0.rule == "pkce-mismatch" && $0.title.contains("no code_verifier") })
    let (short, _) = healthyFlow(tokenVerifier: "abc", tokenStatus: 400, tokenResponse: #"{"error":"invalid_grant"}"#)
    #expect(short.analyze().findings.contains { $0.rule == "pkce-mismatch" && $0.title.contains("invalid length (3)") })
    let (charset, _) = healthyFlow(
        tokenVerifier: "abc+def/ghi=abc+def/ghi=abc+def/ghi=abc+def/ghi=", tokenStatus: 400,
        tokenResponse: #"{"error":"invalid_grant"}"#)
    #expect(
        charset.analyze().findings.contains { $0.rule == "pkce-mismatch" && $0.title.contains("characters outside") })
}

/// A plain challenge is the verifier itself, so it is masked; the check compares fingerprints.
@Test func pkcePlainIsComparedByFingerprint() throws {
    func flow(tokenVerifier: String, status: Int) -> Flow {
        var f = Flow()
        f.add(
            "GET",
            "\(asBase)/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s&code_challenge=\(verifier)&code_challenge_method=plain",
            status: 302, response: [("Location", "https://app.example/cb?code=C9&state=s")])
        f.add(
            "POST", "\(asBase)/token", at: 1, status: status,
            body:
                "grant_type=authorization_code&code=C9&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&client_id=app1&code_verifier=\(tokenVerifier)",
            responseBody: status == 200
                ? #"{"access_token":"AT","token_type":"Bearer","expires_in":60}"# : #"{"error":"invalid_grant"}"#)
        return f
    }
    let good = flow(tokenVerifier: verifier, status: 200)
    #expect(!good.exchanges[0].target.contains(verifier), "a plain challenge is the verifier: masked")
    #expect(!good.analyze().findings.contains { $0.title.contains("is not the plain code_challenge") })
    let bad = flow(tokenVerifier: String(verifier.reversed()), status: 400).analyze()
    let finding = try #require(
        bad.findings.first { $0.rule == "pkce-mismatch" && $0.title.contains("is not the plain code_challenge") })
    #expect(finding.severity == .error)
    #expect(!rules(bad).contains("invalid-grant"), "a specific cause must win over the generic rule")
}

@Test func refreshTokenReuseAfterRotation() throws {
    var (flow, _) = healthyFlow()
    let rotate = flow.add(
        "POST", "\(asBase)/token", at: 100, body: "grant_type=refresh_token&refresh_token=RT-CODE-1&client_id=app1",
        responseBody: #"{"access_token":"AT-2","token_type":"Bearer","expires_in":3600,"refresh_token":"RT-2"}"#)
    let reuse = flow.add(
        "POST", "\(asBase)/token", at: 101, status: 400,
        body: "grant_type=refresh_token&refresh_token=RT-CODE-1&client_id=app1",
        responseBody: #"{"error":"invalid_grant"}"#)
    let a = flow.analyze()
    let f = try #require(a.findings.first { $0.rule == "refresh-token-reuse" })
    #expect(f.title.contains("after it was rotated"))
    #expect(f.exchanges == [rotate, reuse])
    #expect(rules(a, .error) == ["refresh-token-reuse"])
}

@Test func refreshRejectionTellsRevokedFromExpired() throws {
    var f = Flow()
    f.add("POST", "\(asBase)/revoke", body: "token=RT-9&client_id=app1", response: [], responseBody: "")
    f.add(
        "POST", "\(asBase)/token", at: 5, status: 400,
        body: "grant_type=refresh_token&refresh_token=RT-9&client_id=app1",
        responseBody: #"{"error":"invalid_grant"}"#)
    let revoked = try #require(f.analyze().findings.first { $0.rule == "refresh-token-reuse" })
    #expect(revoked.title.contains("revoked"))
    var g = Flow()
    g.add(
        "POST", "\(asBase)/token", status: 400, body: "grant_type=refresh_token&refresh_token=RT-8&client_id=app1",
        responseBody:
            #"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity."}"#
    )
    let expired = try #require(g.analyze().findings.first { $0.rule == "refresh-token-reuse" })
    #expect(expired.title.contains("expired"))
    #expect(expired.evidence["dialect"]?.contains("Microsoft Entra ID") == true)
}

@Test func invalidClientNamesTheAuthenticationMethod() throws {
    var f = Flow()
    f.add(
        "POST", "\(asBase)/token", status: 401, body: "grant_type=client_credentials&client_id=svc&client_secret=WRONG",
        responseBody: #"{"error":"invalid_client"}"#)
    let finding = try #require(f.analyze().findings.first { $0.rule == "invalid-client" })
    #expect(finding.evidence["method"] == "client_secret_post")
    var both = Flow()
    both.add(
        "POST", "\(asBase)/token", request: [("Authorization", "Basic " + Data("svc:pw".utf8).base64EncodedString())],
        body: "grant_type=client_credentials&client_id=svc&client_secret=pw",
        responseBody: #"{"access_token":"a","token_type":"Bearer"}"#)
    #expect(both.analyze().findings.contains { $0.rule == "invalid-client" && $0.title.contains("both") })
    var basicOnly = Flow()
    basicOnly.add(
        "POST", "\(asBase)/token", request: [("Authorization", "Basic " + Data("svc:pw".utf8).base64EncodedString())],
        body: "grant_type=client_credentials", responseBody: #"{"access_token":"a","token_type":"Bearer"}"#)
    #expect(basicOnly.analyze().findings.isEmpty)
}

@Test func unsupportedGrantScopeAndMalformedRequests() {
    var f = Flow()
    f.add(
        "POST", "\(asBase)/token", status: 400, body: "grant_type=implicit&client_id=svc",
        responseBody: #"{"error":"unsupported_grant_type"}"#)
    #expect(
        f.analyze().findings.contains { $0.rule == "unsupported-grant-type" && $0.evidence["grant_type"] == "implicit" }
    )
    var scope = Flow()
    scope.add(
        "POST", "\(asBase)/token",
        body: "grant_type=client_credentials&client_id=svc&client_secret=s&scope=read%20write",
        responseBody: #"{"access_token":"a","token_type":"Bearer","scope":"read"}"#)
    #expect(
        scope.analyze().findings.contains {
            $0.rule == "invalid-scope" && $0.evidence["missing"] == "write" && $0.severity == .warning
        })
    var json = Flow()
    json.add(
        "POST", "\(asBase)/token", status: 400, request: [("Content-Type", "application/json")],
        body: #"{"grant_type":"authorization_code","code":"X"}"#, responseBody: #"{"error":"invalid_request"}"#)
    #expect(json.analyze().findings.contains { $0.rule == "invalid-request" && $0.title.contains("application/json") })
    var get = Flow()
    get.add("GET", "\(asBase)/token?grant_type=client_credentials&client_id=svc", status: 405, responseBody: "")
    #expect(get.analyze().findings.contains { $0.rule == "invalid-request" && $0.title.contains("GET") })
    var missing = Flow()
    missing.add(
        "POST", "\(asBase)/token", status: 400, body: "grant_type=refresh_token&client_id=svc",
        responseBody: #"{"error":"invalid_request"}"#)
    #expect(
        missing.analyze().findings.contains {
            $0.rule == "invalid-request" && $0.title.contains("missing refresh_token")
        })
}

@Test func clockSkewAgainstTheServerDate() throws {
    // The server's Date is 08:00:01 on 2027-01-15; the request left 10 minutes earlier by the local clock.
    let serverNow = 1_800_000_001.0
    var f = Flow()
    f.add(
        "POST", "\(asBase)/token", at: serverNow - 600 - t0.timeIntervalSince1970,
        body: "grant_type=client_credentials&client_id=svc&client_secret=s",
        response: [("Content-Type", "application/json"), ("Date", "Fri, 15 Jan 2027 08:00:01 GMT")],
        responseBody: #"{"access_token":"a","token_type":"Bearer"}"#)
    let finding = try #require(f.analyze().findings.first { $0.rule == "clock-skew" })
    #expect(finding.evidence["skew_seconds"] == "600")
    // Same clock: nothing.
    let (healthy, _) = healthyFlow()
    #expect(!rules(healthy.analyze()).contains("clock-skew"))
}

@Test func jwtChecks() {
    let none = jwt(header: #"{"alg":"none"}"#, claims: #"{"iss":"https://as.example","aud":"app1","nonce":"n-1"}"#)
    let (a, _) = healthyFlow(tokenResponse: #"{"access_token":"AT-1","token_type":"Bearer","id_token":"\#(none)"}"#)
    #expect(a.analyze().findings.contains { $0.rule == "jwt-invalid" && $0.title.contains("alg: none") })
    let wrongAud = jwt(claims: #"{"iss":"https://as.example","aud":"other","nonce":"n-1"}"#)
    let (b, _) = healthyFlow(tokenResponse: #"{"access_token":"AT-1","token_type":"Bearer","id_token":"\#(wrongAud)"}"#)
    #expect(b.analyze().findings.contains { $0.rule == "jwt-invalid" && $0.title.contains("audience") })
    let wrongNonce = jwt(claims: #"{"iss":"https://as.example","aud":"app1","nonce":"n-2"}"#)
    let (c, _) = healthyFlow(
        tokenResponse: #"{"access_token":"AT-1","token_type":"Bearer","id_token":"\#(wrongNonce)"}"#)
    #expect(c.analyze().findings.contains { $0.rule == "jwt-invalid" && $0.evidence["token_nonce"] == "n-2" })
    var d = healthyFlow().0
    d.add("GET", "\(asBase)/jwks", at: 3, responseBody: #"{"keys":[{"kty":"RSA","kid":"k2","n":"x","e":"AQAB"}]}"#)
    #expect(d.analyze().findings.contains { $0.rule == "jwt-invalid" && $0.evidence["kid"] == "k1" })
    var e = healthyFlow().0
    e.add("GET", "\(asBase)/jwks", at: 3, responseBody: #"{"keys":[{"kty":"RSA","kid":"k1","n":"x","e":"AQAB"}]}"#)
    e.add(
        "GET", "\(asBase)/.well-known/openid-configuration", at: 0,
        responseBody: #"{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks"}"#)
    #expect(e.analyze().findings.isEmpty)
    // Discovery announced the issuer with a trailing slash; the id_token's iss has none.
    var g = healthyFlow().0
    g.add(
        "GET", "\(asBase)/.well-known/openid-configuration", at: 0,
        responseBody: #"{"issuer":"https://as.example/","jwks_uri":"https://as.example/jwks"}"#)
    let issuer = g.analyze().findings.first { $0.rule == "jwt-invalid" && $0.title.contains("issuer") }
    #expect(issuer?.evidence["iss"] == "https://as.example")
    #expect(issuer?.evidence["discovered"] == "https://as.example/")
}

@Test func missingLegWhenTheCodeIsNeverExchanged() throws {
    var f = Flow()
    f.add(
        "GET",
        "\(asBase)/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s&code_challenge=\(challenge)&code_challenge_method=S256",
        status: 302, response: [("Location", "https://app.example/cb?code=LOST&state=s")])
    let finding = try #require(f.analyze().findings.first { $0.rule == "missing-leg" })
    #expect(finding.fix.contains("HTTPS_PROXY"))
    #expect(finding.fix.contains("NO_PROXY"))
    #expect(!rules(healthyFlow().0.analyze()).contains("missing-leg"))
}

@Test func upstreamErrors() {
    var f = Flow()
    f.add(
        "POST", "\(asBase)/token", status: 503, body: "grant_type=client_credentials&client_id=svc&client_secret=s",
        response: [("Content-Type", "text/html")], responseBody: "<html><title>Service Unavailable</title></html>")
    f.add(
        "POST", "https://down.example/token", at: 1, status: nil,
        body: "grant_type=client_credentials&client_id=svc&client_secret=s", error: .connectionRefused)
    let a = f.analyze()
    #expect(a.findings.filter { $0.rule == "upstream-error" }.count == 2)
}

struct DialectCase: Sendable, CustomStringConvertible {
    var name: String
    var status: Int
    var contentType: String
    var body: String
    var rule: String
    var description: String { name }
}

/// One response, no other evidence: the provider's own words must give the class.
@Test(arguments: [
    DialectCase(
        name: "Entra code redeemed", status: 400, contentType: "application/json",
        body:
            #"{"error":"invalid_grant","error_description":"AADSTS70002: Error validating credentials. AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.\r\nTrace ID: 9df0","error_codes":[70002,54005]}"#,
        rule: "code-reuse"),
    DialectCase(
        name: "Facebook nested", status: 400, contentType: "application/json",
        body:
            #"{"error":{"message":"This authorization code has been used.","type":"OAuthException","code":100,"error_subcode":36009}}"#,
        rule: "code-reuse"),
    DialectCase(
        name: "Entra expired", status: 400, contentType: "application/json",
        body:
            #"{"error":"invalid_grant","error_description":"AADSTS70008: The provided authorization code or refresh token has expired due to inactivity."}"#,
        rule: "code-expired"),
    DialectCase(
        name: "Keycloak PKCE", status: 400, contentType: "application/json",
        body: #"{"error":"invalid_grant","error_description":"PKCE verification failed"}"#, rule: "pkce-mismatch"),
    DialectCase(
        name: "Keycloak redirect", status: 400, contentType: "application/json",
        body: #"{"error":"invalid_grant","error_description":"Incorrect redirect_uri"}"#, rule: "redirect-uri-mismatch"),
    DialectCase(
        name: "GitHub form error with 200", status: 200, contentType: "application/x-www-form-urlencoded",
        body:
            "error=incorrect_client_credentials&error_description=The+client_id+and%2For+client_secret+passed+are+incorrect.",
        rule: "invalid-client"),
    DialectCase(
        name: "Slack ok false", status: 200, contentType: "application/json",
        body: #"{"ok":false,"error":"invalid_code"}"#, rule: "invalid-grant"),
])
func providerDialects(_ c: DialectCase) {
    var f = Flow()
    f.add(
        "POST", "\(asBase)/token", status: c.status,
        body: "grant_type=authorization_code&code=ABC&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&client_id=app1",
        response: [("Content-Type", c.contentType)], responseBody: c.body)
    let a = f.analyze()
    #expect(rules(a, .error).contains(c.rule), "\(a.findings.map { "\($0.rule): \($0.title)" })")
}

@Test func providerTableEntriesAllHaveASource() {
    #expect(ProviderErrors.table.count >= 40)
    for e in ProviderErrors.table { #expect(e.source.hasPrefix("https://"), "\(e.provider)") }
}

@Test func catalogHasTheRequiredRuleIDs() {
    let ids = Rules.all.map(\.id)
    let required: [RuleID] = [
        "code-reuse", "code-expired", "state-mismatch", "non-json-response", "tls-fault", "redirect-uri-mismatch",
        "pkce-mismatch", "refresh-token-reuse", "invalid-client", "unsupported-grant-type", "invalid-scope",
        "invalid-request", "clock-skew", "jwt-invalid", "missing-leg", "upstream-error", "wrong-endpoint",
        "invalid-grant",
        "authorization-error",
    ]
    #expect(ids == required, "the registry lists every rule once, in the documented order")
    #expect(Set(ids).count == ids.count)
    for rule in Rules.all {
        #expect(!rule.title.isEmpty && !rule.checks.isEmpty, "\(rule.id)")
    }
    #expect(Rules.all.filter { !$0.reportsLive }.map(\.id) == ["missing-leg"])
}

@Test func analysisIsDeterministic() {
    let (flow, _) = healthyFlow(callbackState: "x")
    #expect(flow.analyze() == flow.analyze())
}

@Test func jsonParserReportsOffsets() {
    #expect(
        JSONValue.parse(Array(#"{"a":[1,2,{"b":null}],"c":"\u00e9"}"#.utf8))
            == .success(
                .object([("a", .array([.number(1), .number(2), .object([("b", .null)])])), ("c", .string("é"))])))
    guard case .failure(let e) = JSONValue.parse(Array(#"{"a":1,}"#.utf8)) else { Issue.record("parsed"); return }
    #expect(e.offset == 7)
    guard case .failure(let t) = JSONValue.parse(Array(#"{"a":"#.utf8)) else { Issue.record("parsed"); return }
    #expect(t.endOfInput)
}

@Test func errorPageAtAuthorizeNamingTheRedirectURI() throws {
    var f = Flow()
    f.add(
        "GET",
        "\(asBase)/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fwrong&state=s&code_challenge=\(challenge)&code_challenge_method=S256",
        status: 400, response: [("Content-Type", "text/html")],
        responseBody:
            "<html><title>Error 400: redirect_uri_mismatch</title><p>The redirect URI in the request does not match.</p></html>"
    )
    let finding = try #require(f.analyze().findings.first)
    #expect(finding.rule == "redirect-uri-mismatch")
    #expect(finding.evidence["redirect_uri"] == "https://app.example/wrong")
    #expect(finding.evidence["server_says"] == "Error 400: redirect_uri_mismatch")
    var g = Flow()
    g.add(
        "GET",
        "\(asBase)/authorize?response_type=code&client_id=nope&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s&code_challenge=\(challenge)&code_challenge_method=S256",
        status: 400, responseBody: #"{"error":"invalid_client","error_description":"unknown client"}"#)
    #expect(g.analyze().findings.map(\.rule) == ["invalid-client"])
}
