import AuthtapModel
import Foundation
import Testing

@testable import AuthtapOAuth

/// The authorization request the fixtures below embed, as DOT's login redirect encodes it in `next`.
private let authorizePath =
    "/o/authorize/?client_id=browserapp&redirect_uri=https%3A%2F%2Fapp.example%2Fcallback&response_type=code"
    + "&state=S-1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
private let encodedAuthorizePath = FormCoding.encode(authorizePath)
private let html = [HeaderField("Content-Type", "text/html; charset=utf-8")]
private let form = [HeaderField("Content-Type", "application/x-www-form-urlencoded")]

/// Sign-in steps at the authorization server, from real servers' traffic, and near misses.
let signInStepCases: [RoleCase] = [
    // django-oauth-toolkit's login form as Chromium posts it (Tests/integration/test_browser.py, FLOW's
    // POST /accounts/login/): Django's CSRF token, the credentials, and `next` holding the authorization request.
    .init(
        description: "DOT login form POST with next", expected: [.signInStep], method: "POST",
        target: "/accounts/login/", status: 302,
        requestHeaders: form + [
            HeaderField("Referer", "https://localhost:8443/accounts/login/?next=\(encodedAuthorizePath)")
        ],
        requestBody: "csrfmiddlewaretoken=Xk2sJd0w9vX3c0aHn8bq1LrT5yWcE7pQ&username=alice"
            + "&password=alice-password-0001&next=\(encodedAuthorizePath)",
        responseHeaders: [HeaderField("Location", authorizePath)]),
    // The same POST with only the Referer telling (a login form that posts no hidden `next`).
    .init(
        description: "login POST whose Referer carries next", expected: [.signInStep], method: "POST",
        target: "/accounts/login/", status: 200,
        requestHeaders: form + [
            HeaderField("Referer", "https://localhost:8443/accounts/login/?next=\(encodedAuthorizePath)")
        ],
        requestBody: "username=alice&password=wrong", responseHeaders: html, responseBody: "<form>…</form>"),
    // Duende / IdentityServer's login page: /Account/Login?ReturnUrl=/connect/authorize/callback?… (the URL quoted
    // in https://github.com/skoruba/IdentityServer4.Admin/issues/520), posted back with ReturnUrl in the form.
    .init(
        description: "IdentityServer login POST with ReturnUrl", expected: [.signInStep], method: "POST",
        target: "/Account/Login?ReturnUrl=%2Fconnect%2Fauthorize%2Fcallback%3Fresponse_type%3Dtoken%26client_id"
            + "%3Dskoruba_identity_admin_api_swaggerui%26redirect_uri%3Dhttp%253A%252F%252Flocalhost%253A5001"
            + "%252Fswagger%252Foauth2-redirect.html%26scope%3Dskoruba_identity_admin_api%26state%3DU2F0IEZl",
        status: 302, requestHeaders: form,
        requestBody: "ReturnUrl=%2Fconnect%2Fauthorize%2Fcallback%3Fresponse_type%3Dtoken%26client_id"
            + "%3Dskoruba_identity_admin_api_swaggerui%26state%3DU2F0IEZl&Username=alice&Password=p&button=login",
        responseHeaders: [HeaderField("Location", "/connect/authorize/callback?response_type=token")]),
    // Keycloak serves its login page at the authorize URL, and the form posts to
    // login-actions/authenticate?session_code&execution&client_id&tab_id (keycloak/keycloak
    // services/src/main/java/org/keycloak/services/resources/LoginActionsService.java); an OTP step answers with
    // the next form, so only the Referer ties it to the authorization request.
    .init(
        description: "Keycloak OTP step at login-actions", expected: [.signInStep], method: "POST",
        target: "/realms/demo/login-actions/authenticate?session_code=qJ1n3&execution=3c2e&client_id=app"
            + "&tab_id=Tb1",
        requestHeaders: form + [
            HeaderField(
                "Referer",
                "https://kc.example/realms/demo/protocol/openid-connect/auth?client_id=app&redirect_uri=https%3A%2F"
                    + "%2Fapp.example%2Fcb&state=S-2&response_mode=fragment&response_type=code&scope=openid")
        ],
        requestBody: "otp=123456&login=Sign+In", responseHeaders: html, responseBody: "<form>…</form>"),
    // A consent form posting back to a page of its own, from the authorize URL it was shown at.
    .init(
        description: "consent POST from the authorize page", expected: [.signInStep], method: "POST",
        target: "/consent", status: 302,
        requestHeaders: form + [HeaderField("Referer", "https://as.example\(authorizePath)")],
        requestBody: "allow=Authorize&csrf=abc", responseHeaders: [HeaderField("Location", "/done")]),
    // Ory Hydra's login app (hydra-login-consent-node): the page is /login?login_challenge=…, its form posts the
    // challenge back (https://docs.rs/open-api-hydra/latest/open_api_hydra/apis/admin_api/fn.get_login_request.html).
    .init(
        description: "Hydra login app POST", expected: [.signInStep], method: "POST", target: "/login",
        status: 302,
        requestHeaders: form + [HeaderField("Referer", "https://login.example/login?login_challenge=ch-1")],
        requestBody: "challenge=ch-1&email=a%40b&password=p&_csrf=t",
        responseHeaders: [HeaderField("Location", "https://hydra.example/oauth2/auth?login_verifier=v")]),
    // Near misses.
    .init(
        description: "near miss: the login page itself (a GET)", expected: [],
        target:
            "/accounts/login/?next=\(encodedAuthorizePath)", responseHeaders: html, responseBody: "<form>…</form>"),
    .init(
        description: "near miss: login with next to an ordinary page", expected: [], method: "POST",
        target: "/accounts/login/", status: 302, requestHeaders: form,
        requestBody: "username=a&password=p&next=%2Fdashboard%3Ftab%3D2",
        responseHeaders: [HeaderField("Location", "/dashboard?tab=2")]),
    .init(
        description: "near miss: next names a client but is no authorization request", expected: [],
        method: "POST", target: "/accounts/login/", status: 302, requestHeaders: form,
        requestBody: "username=a&password=p&next=%2Fapps%2F%3Fclient_id%3Dbrowserapp",
        responseHeaders: [HeaderField("Location", "/apps/?client_id=browserapp")]),
    .init(
        description: "near miss: a beacon from an ordinary page", expected: [], method: "POST", target: "/track",
        status: 204, requestHeaders: [HeaderField("Referer", "https://shop.example/cart?item=3")],
        requestBody: "event=view", responseHeaders: []),
]

@Suite struct SignInStepTests {
    @Test(arguments: signInStepCases)
    func roles(_ c: RoleCase) {
        #expect(masker.record(c.exchange).roles == c.expected, "\(c.description)")
    }

    @Test func theLoginPOSTKeepsTheStateAndClientItEmbeds() throws {
        let c = try #require(signInStepCases.first { $0.description == "DOT login form POST with next" })
        let recorded = masker.record(c.exchange)
        let embedded = SignInStep.embeddedRequest(in: recorded.oauthParams)
        #expect(embedded.first { $0.name == "state" }?.value == "S-1")
        #expect(embedded.first { $0.name == "client_id" }?.value == "browserapp")
        #expect(embedded.allSatisfy { $0.location.isRequest }, "\(embedded.map(\.location))")
        #expect(recorded.oauthParams.first { $0.name == "password" }?.fingerprint != nil, "the password stays masked")
    }

    @Test func aRefererThatIsTheAuthorizationRequestIsTheOneEmbedded() throws {
        let c = try #require(signInStepCases.first { $0.description == "Keycloak OTP step at login-actions" })
        let embedded = SignInStep.embeddedRequest(in: masker.record(c.exchange).oauthParams)
        #expect(embedded.first { $0.name == "state" }?.value == "S-2")
        #expect(embedded.allSatisfy { $0.location == .requestHeaderRefererQuery })
    }

    @Test func everyReturnParameterHasASource() {
        for row in SignInStep.returnParameters + SignInStep.challengeParameters {
            #expect(!row.source.isEmpty && !row.name.isEmpty, "\(row.name)")
        }
    }
}
