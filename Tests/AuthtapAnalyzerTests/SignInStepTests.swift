import AuthtapAnalyzer
import AuthtapModel
import AuthtapOAuth
import Foundation
import Testing

// Sign-in steps at the authorization server joined to their transaction. The shapes are those of the real
// browser sign-in in Tests/integration/test_browser.py (Chromium → django-oauth-toolkit, FLOW), of Keycloak's
// login-actions form, and of Ory Hydra's login app.

private let dot = "https://localhost:8443"
private let app = "https://localhost:9443"

private func authorizeQuery(state: String?) -> String {
    "client_id=browserapp&redirect_uri=https%3A%2F%2Flocalhost%3A9443%2Fcallback&response_type=code"
        + (state.map { "&state=\($0)" } ?? "") + "&code_challenge=\(challenge)&code_challenge_method=S256"
}

private func encoded(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .alphanumerics)! }

/// The browser test's healthy sign-in: app /login → authorize → login page → login POST → consent page →
/// consent POST → token (completes before the callback, so it is numbered first) → callback.
@discardableResult
private func dotSignIn(state: String = "S-1", into f: inout Flow, at t: Double = 0) -> Int64 {
    let authorize = "/o/authorize/?" + authorizeQuery(state: state)
    let loginPage = "\(dot)/accounts/login/?next=\(encoded(authorize))"
    let html = [("Content-Type", "text/html; charset=utf-8")]
    f.add("GET", "\(app)/login", at: t, status: 302, response: [("Location", dot + authorize)])
    f.add("GET", dot + authorize, at: t + 0.1, status: 302, response: [("Location", loginPage)])
    f.add("GET", loginPage, at: t + 0.2, response: html, responseBody: "<form>login</form>")
    let login = f.add(
        "POST", "\(dot)/accounts/login/", at: t + 1, status: 302, request: [("Referer", loginPage)],
        body: "csrfmiddlewaretoken=Xk2sJd0w9vX3c0aHn8bq1LrT5yWcE7pQ&username=alice&password=alice-password-0001"
            + "&next=\(encoded(authorize))",
        response: [("Location", authorize)])
    f.add("GET", dot + authorize, at: t + 1.1, response: html, responseBody: "<form>consent</form>")
    f.add(
        "POST", dot + "/o/authorize/", at: t + 2, status: 302, request: [("Referer", dot + authorize)],
        body: "csrfmiddlewaretoken=Xk2sJd0w9vX3c0aHn8bq1LrT5yWcE7pQ&redirect_uri=https%3A%2F%2Flocalhost%3A9443"
            + "%2Fcallback&scope=openid&nonce=&client_id=browserapp&state=\(state)&response_type=code"
            + "&code_challenge=\(challenge)&code_challenge_method=S256&claims=&allow=Authorize",
        response: [("Location", "\(app)/callback?code=CODE-\(state)&state=\(state)")])
    f.add(
        "POST", "\(dot)/o/token/", at: t + 2.3, status: 200,
        body: "grant_type=authorization_code&code=CODE-\(state)&redirect_uri=https%3A%2F%2Flocalhost%3A9443%2Fcallback"
            + "&client_id=browserapp&code_verifier=\(verifier)",
        responseBody: #"{"access_token":"AT-\#(state)","token_type":"Bearer","expires_in":36000}"#)
    f.add(
        "GET", "\(app)/callback?code=CODE-\(state)&state=\(state)", at: t + 2.2, status: 302,
        response: [("Location", "/")])
    return login
}

@Test func theLoginFormPOSTIsALegOfItsSignIn() throws {
    var f = Flow()
    let login = dotSignIn(into: &f)
    let a = f.analyze()
    #expect(rules(a, .error).isEmpty, "\(a.findings.map { "\($0.rule): \($0.title)" })")
    try #require(a.transactions.count == 1, "\(a.transactions)")
    let t = a.transactions[0]
    #expect(t.outcome == "ok" && t.clientID == "browserapp" && t.state == "S-1")
    let ids = t.members.map(\.exchange)
    #expect(ids.contains(login), "login POST #\(login) not in \(ids)")
    #expect(ids == ids.sorted(), "members in capture order")
    #expect(t.members.first { $0.exchange == login }?.leg == .other)
    // The authorization request comes first, and the login POST lies between it and the consent.
    #expect(t.members.first?.leg == .authorize)
}

@Test func twoTabsEachLoginPOSTJoinsItsOwnSignIn() throws {
    var f = Flow()
    let first = dotSignIn(state: "S-1", into: &f)
    let second = dotSignIn(state: "S-2", into: &f, at: 10)
    let a = f.analyze()
    try #require(a.transactions.count == 2, "\(a.transactions)")
    #expect(a.transactions[0].members.contains { $0.exchange == first })
    #expect(a.transactions[1].members.contains { $0.exchange == second })
    #expect(!a.transactions[0].members.contains { $0.exchange == second })
}

@Test func aLoginPOSTOfTheFirstTabAfterTheSecondStartedJoinsTheFirst() throws {
    // The interleaving of the browser test's two-tabs scenario: both authorize, then the first tab signs in.
    var f = Flow()
    let q1 = "/o/authorize/?" + authorizeQuery(state: "S-1")
    let q2 = "/o/authorize/?" + authorizeQuery(state: "S-2")
    let a1 = f.add("GET", dot + q1, status: 302, response: [("Location", "/accounts/login/?next=\(encoded(q1))")])
    let a2 = f.add(
        "GET", dot + q2, at: 1, status: 302, response: [("Location", "/accounts/login/?next=\(encoded(q2))")])
    let login = f.add(
        "POST", "\(dot)/accounts/login/", at: 2, status: 302, body: "username=alice&password=p&next=\(encoded(q1))",
        response: [("Location", q1)])
    let a = f.analyze()
    let owner = a.transactions.first { $0.members.contains { $0.exchange == login } }
    #expect(owner?.members.map(\.exchange) == [a1, login], "\(a.transactions)")
    #expect(!(owner?.members.contains { $0.exchange == a2 } ?? true))
}

@Test func aStatelessStepJoinsTheLatestUnansweredRequestOfItsClient() throws {
    // Keycloak's OTP step: only client_id in its own URL, the Referer is the authorization request (no state).
    var f = Flow()
    let kc = "https://kc.example/realms/demo"
    let auth =
        "\(kc)/protocol/openid-connect/auth?client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
        + "&response_type=code&scope=openid"
    let html = [("Content-Type", "text/html")]
    let other = f.add("GET", auth.replacingOccurrences(of: "client_id=app", with: "client_id=other"), response: html)
    let a1 = f.add("GET", auth, at: 1, response: html, responseBody: "<form>login</form>")
    let otp = f.add(
        "POST", "\(kc)/login-actions/authenticate?session_code=qJ1n3&execution=3c2e&client_id=app&tab_id=Tb1",
        at: 2, request: [("Referer", auth)], body: "otp=123456", response: html, responseBody: "<form/>")
    let a = f.analyze()
    let owner = a.transactions.first { $0.members.contains { $0.exchange == otp } }
    #expect(owner?.members.map(\.exchange) == [a1, otp], "\(a.transactions)")
    #expect(!(owner?.members.contains { $0.exchange == other } ?? true))
}

@Test func aStepWhoseAuthorizationRequestWasNotCapturedMakesNoTransaction() {
    var f = Flow()
    let q = "/o/authorize/?" + authorizeQuery(state: "S-9")
    f.add(
        "POST", "\(dot)/accounts/login/", status: 302, body: "username=alice&password=p&next=\(encoded(q))",
        response: [("Location", q)])
    let a = f.analyze()
    #expect(a.transactions.isEmpty, "\(a.transactions)")
    #expect(a.findings.isEmpty)
}

@Test func hydrasLoginAppJoinsByItsChallenge() throws {
    var f = Flow()
    let hydra = "https://hydra.example"
    let auth = "\(hydra)/oauth2/auth?" + authorizeQuery(state: "S-H")
    let a1 = f.add(
        "GET", auth, status: 302, response: [("Location", "https://login.example/login?login_challenge=ch-1")])
    let login = f.add(
        "POST", "https://login.example/login", at: 1, status: 302,
        request: [("Referer", "https://login.example/login?login_challenge=ch-1")],
        body: "challenge=ch-1&email=a%40b&password=p", response: [("Location", auth + "&login_verifier=v")])
    let a = f.analyze()
    let owner = a.transactions.first { $0.members.contains { $0.exchange == login } }
    #expect(owner?.members.map(\.exchange) == [a1, login], "\(a.transactions)")
}
