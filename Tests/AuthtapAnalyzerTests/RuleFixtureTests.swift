import AuthtapModel
import Foundation
import Testing

@testable import AuthtapAnalyzer

/// One registered rule's evidence: exchanges that make it fire, and almost the same exchanges that must not.
struct RuleFixture: Sendable, CustomStringConvertible {
    var rule: RuleID
    var positive: @Sendable () -> Flow
    var nearMiss: @Sendable () -> Flow
    var description: String { rule.rawValue }
}

private let authorizeURL =
    "\(asBase)/authorize?response_type=code&client_id=app1"
    + "&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s&code_challenge=\(challenge)&code_challenge_method=S256"
private let clientCredentials = "grant_type=client_credentials&client_id=svc&client_secret=s"
private let tokenJSON = #"{"access_token":"a","token_type":"Bearer","expires_in":60}"#
private let invalidGrant = #"{"error":"invalid_grant","error_description":"invalid code"}"#

/// A token request for `code` after `healthyFlow`'s, answered with invalid_grant.
private func redeemAgain(_ flow: Flow, code: String, at seconds: Double) -> Flow {
    var flow = flow
    flow.add(
        "POST", "\(asBase)/token", at: seconds, status: 400,
        body: "grant_type=authorization_code&code=\(code)&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
            + "&client_id=app1&code_verifier=\(verifier)",
        responseBody: invalidGrant)
    return flow
}

/// One client-credentials token request.
private func tokenRequest(
    method: String = "POST", status: Int? = 200, contentType: String = "application/json",
    date: String? = nil, at seconds: Double = 0, body: String = clientCredentials,
    responseBody: String = tokenJSON, error: ErrorKind? = nil,
    tlsFailure: TLSFailureReason? = nil, host: String = asBase
) -> Flow {
    var f = Flow()
    let url = method == "GET" ? "\(host)/token?\(body)" : "\(host)/token"
    f.add(
        method, url, at: seconds, status: status, body: method == "GET" ? "" : body,
        response: [("Content-Type", contentType)] + (date.map { [("Date", $0)] } ?? []),
        responseBody: responseBody, error: error, tlsFailure: tlsFailure)
    return f
}

/// The healthy flow's refresh token rotated once, then `sent` presented again.
private func refresh(presenting sent: String) -> Flow {
    var (flow, _) = healthyFlow()
    flow.add(
        "POST", "\(asBase)/token", at: 100,
        body: "grant_type=refresh_token&refresh_token=RT-CODE-1&client_id=app1",
        responseBody: #"{"access_token":"AT-2","token_type":"Bearer","expires_in":3600,"refresh_token":"RT-2"}"#)
    flow.add(
        "POST", "\(asBase)/token", at: 101, status: 400,
        body: "grant_type=refresh_token&refresh_token=\(sent)&client_id=app1", responseBody: invalidGrant)
    return flow
}

/// An authorization request redirected back with `query`, and the callback that received it.
private func frontChannel(_ query: String) -> Flow {
    var f = Flow()
    f.add("GET", authorizeURL, status: 302, response: [("Location", "https://app.example/cb?\(query)")])
    f.add(
        "GET", "\(client)/cb?\(query)", at: 0.5, response: [("Content-Type", "text/html")],
        responseBody: "<html>ok</html>")
    return f
}

/// A token response that grants `scope`.
private func granted(_ scope: String) -> String {
    #"{"access_token":"a","token_type":"Bearer","scope":"\#(scope)"}"#
}

private let serverDate = "Fri, 15 Jan 2027 08:00:01 GMT"
/// Seconds after t0 at which the server's Date header above falls.
private let serverNow = 1_800_000_001.0 - t0.timeIntervalSince1970
private let unsignedTokenResponse = #"{"access_token":"AT","token_type":"Bearer","id_token":"\#(unsigned)"}"#
private let unsigned = jwt(
    header: #"{"alg":"none"}"#,
    claims: #"{"iss":"https://as.example","aud":"app1","nonce":"n-1"}"#)

let ruleFixtures: [RuleFixture] = [
    RuleFixture(
        rule: "code-reuse",
        positive: { redeemAgain(healthyFlow().0, code: "CODE-1", at: 1.3) },
        nearMiss: { redeemAgain(healthyFlow().0, code: "CODE-2", at: 1.3) }),
    RuleFixture(
        rule: "code-expired",
        positive: { healthyFlow(tokenDelay: 700, tokenStatus: 400, tokenResponse: invalidGrant).0 },
        // Without the authorization request, a quick refusal leaves more than expiry open.
        nearMiss: { redeemAgain(Flow(), code: "CODE-9", at: 1) }),
    RuleFixture(
        rule: "state-mismatch",
        positive: { healthyFlow(callbackState: "st-OTHER").0 },
        nearMiss: { healthyFlow(callbackState: "st-1").0 }),
    RuleFixture(
        rule: "non-json-response",
        positive: {
            tokenRequest(
                contentType: "text/html",
                responseBody: "<html><title>Sign in</title></html>")
        },
        nearMiss: { tokenRequest() }),
    RuleFixture(
        rule: "tls-fault",
        positive: { tokenRequest(status: nil, error: .upstreamTLS, tlsFailure: .untrustedIssuer) },
        nearMiss: { tokenRequest(status: nil, error: .connectionRefused) }),
    RuleFixture(
        rule: "redirect-uri-mismatch",
        positive: {
            healthyFlow(
                tokenRedirect: "https://app.example/cb/", tokenStatus: 400,
                tokenResponse: invalidGrant
            ).0
        },
        nearMiss: {
            healthyFlow(
                tokenRedirect: "https://app.example/cb", tokenStatus: 400,
                tokenResponse: invalidGrant
            ).0
        }),
    RuleFixture(
        rule: "pkce-mismatch",
        positive: {
            healthyFlow(
                tokenVerifier: String(verifier.reversed()), tokenStatus: 400,
                tokenResponse: invalidGrant
            ).0
        },
        nearMiss: { healthyFlow(tokenVerifier: verifier, tokenStatus: 400, tokenResponse: invalidGrant).0 }),
    RuleFixture(
        rule: "refresh-token-reuse",
        positive: { refresh(presenting: "RT-CODE-1") },
        nearMiss: {
            var (flow, _) = healthyFlow()
            flow.add(
                "POST", "\(asBase)/token", at: 100,
                body: "grant_type=refresh_token&refresh_token=RT-CODE-1&client_id=app1",
                responseBody: #"{"access_token":"AT-2","token_type":"Bearer","refresh_token":"RT-2"}"#)
            return flow
        }),
    RuleFixture(
        rule: "invalid-client",
        positive: { tokenRequest(status: 401, responseBody: #"{"error":"invalid_client"}"#) },
        nearMiss: { tokenRequest(status: 200) }),
    RuleFixture(
        rule: "unsupported-grant-type",
        positive: {
            tokenRequest(
                status: 400, body: "grant_type=implicit&client_id=svc",
                responseBody: #"{"error":"unsupported_grant_type"}"#)
        },
        nearMiss: { tokenRequest(status: 200, body: "grant_type=implicit&client_id=svc") }),
    RuleFixture(
        rule: "invalid-scope",
        positive: {
            tokenRequest(
                body: clientCredentials + "&scope=read%20write",
                responseBody: granted("read"))
        },
        nearMiss: {
            tokenRequest(
                body: clientCredentials + "&scope=read%20write",
                responseBody: granted("write read"))
        }),
    RuleFixture(
        rule: "invalid-request",
        positive: { tokenRequest(method: "GET") },
        nearMiss: { tokenRequest(method: "POST") }),
    RuleFixture(
        rule: "clock-skew",
        positive: { tokenRequest(date: serverDate, at: serverNow - 600) },
        nearMiss: { tokenRequest(date: serverDate, at: serverNow - 30) }),
    RuleFixture(
        rule: "jwt-invalid",
        positive: { healthyFlow(tokenResponse: unsignedTokenResponse).0 },
        nearMiss: { healthyFlow().0 }),
    RuleFixture(
        rule: "missing-leg",
        positive: { frontChannel("code=LOST&state=s") },
        nearMiss: {
            var f = frontChannel("code=LOST&state=s")
            f.add(
                "POST", "\(asBase)/token", at: 1,
                body: "grant_type=authorization_code&code=LOST&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
                    + "&client_id=app1&code_verifier=\(verifier)",
                responseBody: tokenJSON)
            return f
        }),
    RuleFixture(
        rule: "upstream-error",
        positive: {
            tokenRequest(
                status: 503, contentType: "text/html",
                responseBody: "<html><title>Service Unavailable</title></html>")
        },
        nearMiss: { tokenRequest(status: 400, responseBody: #"{"error":"invalid_client"}"#) }),
    RuleFixture(
        rule: "wrong-endpoint",
        positive: {
            tokenRequest(
                status: 400,
                responseBody: #"{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'x' not found."}"#)
        },
        nearMiss: { tokenRequest(status: 400, responseBody: #"{"error":"invalid_request"}"#) }),
    RuleFixture(
        rule: "invalid-grant",
        positive: { redeemAgain(Flow(), code: "CODE-9", at: 1) },
        nearMiss: {
            healthyFlow(
                tokenVerifier: String(verifier.reversed()), tokenStatus: 400,
                tokenResponse: invalidGrant
            ).0
        }),
    RuleFixture(
        rule: "authorization-error",
        positive: { frontChannel("error=access_denied&state=s") },
        nearMiss: { frontChannel("code=C1&state=s") }),
]

/// Runs one rule alone over a flow, as the analyzer would.
private func findings(of rule: any Rule, _ flow: Flow) -> [Finding] {
    let facts = flow.exchanges.sorted { ($0.id ?? 0) < ($1.id ?? 0) }.map(ExchangeFacts.init)
    let (_, membership) = TransactionBuilder.build(facts)
    var context = RuleContext(facts: facts, membership: membership, options: .init(), caPath: "certs/authtap-ca.pem")
    rule.evaluate(&context)
    return context.findings
}

@Test func everyRegisteredRuleHasFixtures() {
    #expect(ruleFixtures.map(\.rule) == Rules.all.map(\.id))
}

@Test(arguments: ruleFixtures)
func ruleFiresOnItsFixtureAndNotOnTheNearMiss(_ fixture: RuleFixture) throws {
    let positive = fixture.positive().analyze()
    #expect(
        positive.findings.contains { $0.rule == fixture.rule },
        "\(positive.findings.map { "\($0.rule): \($0.title)" })")
    let nearMiss = fixture.nearMiss().analyze()
    #expect(
        !nearMiss.findings.contains { $0.rule == fixture.rule },
        "\(nearMiss.findings.map { "\($0.rule): \($0.title)" })")
}

/// A finding's rule id is the id of the rule that made it, and every id is in the registry.
@Test(arguments: ruleFixtures)
func findingsCarryTheirRulesRegisteredID(_ fixture: RuleFixture) {
    let registered = Set(Rules.all.map(\.id))
    for flow in [fixture.positive(), fixture.nearMiss()] {
        for rule in Rules.all {
            for finding in findings(of: rule, flow) {
                #expect(finding.rule == rule.id, "\(rule.id) reported \(finding.rule)")
            }
        }
        for finding in flow.analyze().findings {
            #expect(registered.contains(finding.rule), "\(finding.rule)")
        }
    }
}
