import AuthtapModel
import Foundation
import Testing

@testable import AuthtapAnalyzer

/// One root cause per failure, the classifier's reading of provider shapes, and the state evidence.
@Suite struct RootCauseTests {
    /// A token request (code grant, no authorization leg captured) answered with `body`.
    func token(status: Int = 400, contentType: String = "application/json", _ body: String) -> Analysis {
        var f = Flow()
        f.add(
            "POST", "\(asBase)/token", status: status,
            body: "grant_type=authorization_code&code=C-1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&client_id=app1",
            response: [("Content-Type", contentType)], responseBody: body)
        return f.analyze()
    }

    @Test func aGenericFindingAboutTheSameResponseFoldsIntoTheSpecificOne() throws {
        // league/oauth2-server answers a redirect_uri mismatch with invalid_request.
        let a = token(#"{"error":"invalid_request","error_description":"Invalid redirect URI","hint":""}"#)
        let root = try #require(a.findings.first { $0.rootCause == true })
        #expect(root.rule == "redirect-uri-mismatch")
        #expect(a.findings.filter { $0.severity == .error }.count == 1)
        // Without the specific words, invalid-request is the root itself.
        let generic = token(#"{"error":"invalid_request"}"#)
        #expect(generic.findings.first { $0.rootCause == true }?.rule == "invalid-request")
    }

    @Test func anErrorInA200IsAWarningBesideItsCause() throws {
        let a = token(
            status: 200, contentType: "application/x-www-form-urlencoded",
            "error=bad_verification_code&error_description=The+code+passed+is+incorrect+or+expired.")
        let root = try #require(a.findings.first { $0.rootCause == true })
        #expect(root.rule == "invalid-grant")
        #expect(a.findings.filter { $0.severity == .error }.map(\.rule) == ["invalid-grant"])
        #expect(Set((root.candidates ?? []).map(\.cause)).isSuperset(of: ["code-reuse", "code-expired"]))
    }

    @Test func theCatchAllSentenceIsSetAsideAndTheHintRead() {
        let rfc =
            "The provided authorization grant (e.g., authorization code, resource owner credentials) or refresh token "
            + "is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or "
            + "was issued to another client."
        let bare = ErrorReport(code: "invalid_grant", description: rfc, dialect: "json")
        #expect(bare.catchAll)
        #expect(ProviderErrors.classify(bare).0 == .invalidGrant)
        let hinted = ErrorReport(
            code: "invalid_grant", description: rfc + " The \"code_verifier\" does not match.", dialect: "json")
        #expect(ProviderErrors.classify(hinted).0 == .pkceMismatch)
    }

    @Test func theSameWordsOnAnotherLeg() {
        let expired = ErrorReport(code: "invalid_grant", description: "Token expired", dialect: "json")
        #expect(ProviderErrors.classify(expired, leg: .code).0 == .codeExpired)
        #expect(ProviderErrors.classify(expired, leg: .refresh).0 == .refreshExpired)
        #expect(ProviderErrors.classify(expired, leg: .assertion).0 == .clockSkew)
        #expect(ProviderErrors.classify(expired, leg: .device).0 == .deviceExpired)
        // Codes compare without case or punctuation: Azure DevOps sends `InvalidScope`.
        #expect(ProviderErrors.classify(ErrorReport(code: "InvalidScope", dialect: "callback")).0 == .invalidScope)
    }

    @Test func shapesWithoutAnErrorMember() throws {
        let hubspot = try #require(
            ProviderErrors.report(
                json: try JSONValue.parse(Array(#"{"status":"BAD_REFRESH_TOKEN","message":"missing or invalid"}"#.utf8))
                    .get(), status: 400))
        #expect(ProviderErrors.classify(hubspot, leg: .refresh).0 == .refreshInvalid)
        // A successful token response is not an error, whatever fields it has.
        let ok = try JSONValue.parse(Array(#"{"access_token":"a","token_type":"Bearer","status":"ok"}"#.utf8)).get()
        #expect(ProviderErrors.report(json: ok, status: 200) == nil)
    }

    @Test func aPageShowsItsTextNotItsScriptsOrEchoedParameters() throws {
        let page = """
            <html><head><script>var error = "redirect_uri";</script><style>.e{}</style></head>
            <body><h1>401. That&#39;s an error.</h1><p>Error: invalid_client</p><p>The OAuth client was not found.</p>
            <p>Request Details</p><p>redirect_uri=urn:ietf:wg:oauth:2.0:oob</p></body></html>
            """
        #expect(HTMLText.visible(page).hasPrefix("401. That's an error."))
        let report = try #require(ProviderErrors.report(page: page))
        #expect(report.code == "invalid_client")
        #expect(ProviderErrors.classify(report, leg: .front).0 == .invalidClient)
    }

    @Test func validJSONWithAnHTMLLabelIsAWarningNotAPage() throws {
        let a = token(status: 400, contentType: "text/html", #"{"error":"invalid_client"}"#)
        let label = try #require(a.findings.first { $0.rule == "non-json-response" })
        #expect(label.severity == .warning)
        #expect(!label.title.contains("HTML instead of JSON"))
        #expect(a.findings.first { $0.rootCause == true }?.rule == "invalid-client")
    }

    @Test func aSecondSignInBeforeTheCallbackIsNamed() throws {
        var f = Flow()
        let authorize = { (state: String, at: Double) in
            "\(asBase)/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
                + "&state=\(state)"
        }
        f.add("GET", authorize("first", 0), status: 200, response: [("Content-Type", "text/html")])
        let second = f.add("GET", authorize("second", 1), at: 1, status: 200, response: [("Content-Type", "text/html")])
        f.add(
            "GET", "\(client)/cb?code=C-9&state=first", at: 2, status: 400, response: [("Content-Type", "text/plain")],
            responseBody: "mismatching_state: CSRF Warning! State not equal in request and response.")
        let a = f.analyze()
        let finding = try #require(a.findings.first { $0.rule == "state-mismatch" })
        #expect(finding.severity == .error && finding.rootCause == true)
        #expect(finding.evidence["later_sign_in"] == "#\(second)")
        #expect(finding.explanation.contains("second sign-in"))
    }

    @Test func theStateCookieThatDidNotComeBack() throws {
        var f = Flow()
        f.add(
            "GET", "\(client)/login", status: 302,
            response: [
                ("Location", "\(asBase)/authorize?response_type=code&client_id=app1&state=s-77"),
                ("Set-Cookie", "oauth_state=s-77-cookie-value-0123456789; Path=/; Secure; HttpOnly; SameSite=Strict"),
            ])
        f.add("GET", "\(asBase)/authorize?response_type=code&client_id=app1&state=s-77", at: 0.1, status: 200)
        f.add(
            "POST", "\(client)/cb", at: 3, status: 403,
            request: [("Content-Type", "application/x-www-form-urlencoded")],
            body: "code=C-5&state=s-77", response: [("Content-Type", "text/plain")],
            responseBody: "Unable to verify authorization request state.")
        let a = f.analyze()
        let finding = try #require(a.findings.first { $0.rule == "state-mismatch" })
        #expect(finding.evidence["state_cookie"] == "oauth_state")
        #expect(finding.evidence["cookie_sent_back"] == "(not sent)")
        #expect(finding.evidence["cookie_attributes"]?.contains("SameSite=Strict") == true)
        // The cookie sent back unchanged: no cookie evidence.
        var g = Flow()
        g.add(
            "GET", "\(client)/login", status: 302,
            response: [
                ("Location", "\(asBase)/authorize?response_type=code&client_id=app1&state=s-78"),
                ("Set-Cookie", "oauth_state=s-78-cookie-value-0123456789; Path=/; SameSite=Lax"),
            ])
        g.add("GET", "\(asBase)/authorize?response_type=code&client_id=app1&state=s-78", at: 0.1, status: 200)
        g.add(
            "GET", "\(client)/cb?code=C-6&state=s-78", at: 3,
            request: [("Cookie", "oauth_state=s-78-cookie-value-0123456789")],
            response: [("Content-Type", "text/html")], responseBody: "<html>ok</html>")
        #expect(g.analyze().findings.allSatisfy { $0.evidence["state_cookie"] == nil })
    }

    @Test func oneSignInAskingAgainIsOneTransaction() {
        var f = Flow()
        let url =
            "\(asBase)/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
            + "&state=s-1"
        f.add("GET", url, status: 302, response: [("Location", "\(asBase)/login?next=%2Fauthorize")])
        f.add("GET", url, at: 1, status: 200, response: [("Content-Type", "text/html")])
        f.add("GET", url, at: 2, status: 302, response: [("Location", "https://app.example/cb?code=C-1&state=s-1")])
        f.add("GET", "\(client)/cb?code=C-1&state=s-1", at: 2.1, response: [("Content-Type", "text/html")])
        // A later sign-in with the same (constant) state is a new transaction once the first was answered.
        f.add("GET", url, at: 30, status: 302, response: [("Location", "https://app.example/cb?code=C-2&state=s-1")])
        #expect(f.analyze().transactions.count == 2)
    }

    @Test func aRefusedClientListsItsCandidates() throws {
        var f = Flow()
        let grant = "grant_type=client_credentials&client_id=svc&client_secret="
        f.add(
            "POST", "\(asBase)/token", body: grant + "right-secret-1",
            responseBody: #"{"access_token":"a","token_type":"Bearer"}"#)
        f.add(
            "POST", "\(asBase)/token", at: 5, status: 401, body: grant + "wrong-secret-2",
            responseBody: #"{"error":"invalid_client"}"#)
        let finding = try #require(f.analyze().findings.first { $0.rule == "invalid-client" && $0.rootCause == true })
        let status = Dictionary(uniqueKeysWithValues: (finding.candidates ?? []).map { ($0.cause, $0.status) })
        #expect(status["invalid-client"] == .supported)
        #expect(status["auth-method"] == .ruledOut)
    }

    @Test func aMalformedRequestListsItsCandidates() throws {
        var f = Flow()
        f.add(
            "POST", "\(asBase)/token", status: 400, request: [("Content-Type", "application/json")],
            body: #"{"grant_type":"authorization_code","code":"C-1"}"#, responseBody: #"{"error":"invalid_request"}"#)
        let finding = try #require(f.analyze().findings.first { $0.title.contains("server says") })
        let status = Dictionary(uniqueKeysWithValues: (finding.candidates ?? []).map { ($0.cause, $0.status) })
        #expect(status["body-encoding"] == .supported)
        #expect(status["credentials-twice"] == .ruledOut)
    }

    @Test func healthyShapesThatMentionErrorsAreNotErrors() {
        // "error": null in a successful token response.
        let ok = token(
            status: 200, #"{"access_token":"a","token_type":"Bearer","expires_in":3600,"error":null,"errors":[]}"#)
        #expect(ok.findings.filter { $0.severity >= .warning }.isEmpty)
        // A login page at /authorize with its own hidden "Error" for the form.
        var f = Flow()
        f.add(
            "GET",
            "\(asBase)/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s",
            response: [("Content-Type", "text/html")],
            responseBody:
                #"<title>Sign in</title><div class="alert" hidden>Error</div>"#
                + #"<form><input name="password" type="password"></form>"#
        )
        #expect(f.analyze().findings.filter { $0.severity >= .warning }.isEmpty)
    }

    @Test func twoTabsInterleaveAndTheFirstFinishes() throws {
        // Tab 1 starts, tab 2 starts, tab 1 approves consent (a POST with its state) and comes back; its code is
        // never exchanged: the client held tab 2's state.
        var f = Flow()
        let base = "\(asBase)/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
        f.add("GET", base + "&state=one", status: 200, response: [("Content-Type", "text/html")])
        let second = f.add("GET", base + "&state=two", at: 1, status: 200, response: [("Content-Type", "text/html")])
        f.add(
            "POST", "\(asBase)/authorize", at: 2, status: 302,
            body: "response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=one&allow=1",
            response: [("Location", "https://app.example/cb?code=C-7&state=one")])
        f.add("GET", "\(client)/cb?code=C-7&state=one", at: 2.1, response: [("Content-Type", "text/html")])
        let finding = try #require(f.analyze().findings.first { $0.rule == "state-mismatch" })
        #expect(finding.severity == .error)
        #expect(finding.evidence["later_sign_in"] == "#\(second)")
    }
}
