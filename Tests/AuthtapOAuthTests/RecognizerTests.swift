import AuthtapModel
import Foundation
import Testing

@testable import AuthtapOAuth

struct RoleCase: Sendable, CustomStringConvertible {
    var description: String
    var expected: [OAuthRole]
    var method = "GET"
    var target: String
    var status: Int? = 200
    var requestHeaders: [HeaderField] = []
    var requestBody = ""
    var responseHeaders: [HeaderField] = [HeaderField("Content-Type", "application/json")]
    var responseBody = ""

    var exchange: Exchange {
        var e = baseExchange(method: method, target: target, status: status)
        e.requestHeaders = requestHeaders
        e.requestBody = body(requestBody)
        e.responseHeaders = responseHeaders
        e.responseBody = body(responseBody)
        return e
    }
}

/// One fixture per role, with near misses that are not OAuth.
let roleCases: [RoleCase] = [
    .init(
        description: "authorize with redirect carrying code",
        expected: [.authorizationRequest, .authorizationResponse],
        target: "/oauth2/v1/authorize?response_type=code&client_id=app&redirect_uri=https://app/cb&state=s",
        status: 302,
        responseHeaders: [HeaderField("Location", "https://app/cb?code=abc&state=s")]),
    .init(
        description: "authorize answered by a login page", expected: [.authorizationRequest],
        target: "/authorize?response_type=code&client_id=app&state=s",
        responseHeaders: [HeaderField("Content-Type", "text/html")],
        responseBody: "<html><title>Sign in</title></html>"),
    .init(
        description: "authorize error redirect", expected: [.authorizationRequest, .authorizationResponse],
        target: "/authorize?response_type=code&client_id=app&state=s", status: 302,
        responseHeaders: [HeaderField("Location", "https://app/cb?error=access_denied&state=s")]),
    .init(
        description: "implicit fragment response on a login POST", expected: [.authorizationResponse],
        method: "POST", target: "/login", status: 303, requestBody: "user=a",
        responseHeaders: [HeaderField("Location", "https://app/cb#access_token=t&token_type=bearer&state=s")]),
    .init(
        description: "callback with code and state", expected: [.callback], target: "/cb?code=abc&state=s",
        responseHeaders: [HeaderField("Content-Type", "text/html")]),
    .init(
        description: "callback with error", expected: [.callback],
        target: "/cb?error=access_denied&error_description=no&state=s",
        responseHeaders: [HeaderField("Content-Type", "text/html")]),
    .init(
        description: "form_post callback", expected: [.callback], method: "POST", target: "/signin-oidc",
        requestHeaders: [HeaderField("Content-Type", "application/x-www-form-urlencoded")],
        requestBody: "code=abc&state=s",
        responseHeaders: [HeaderField("Content-Type", "text/html")]),
    .init(
        description: "token exchange", expected: [.token], method: "POST", target: "/oauth/token",
        requestBody: "grant_type=authorization_code&code=abc&redirect_uri=https://app/cb",
        responseBody: #"{"access_token":"t","token_type":"Bearer","expires_in":3600}"#),
    .init(
        description: "token error", expected: [.token], method: "POST", target: "/token", status: 400,
        requestBody: "grant_type=refresh_token&refresh_token=r", responseBody: #"{"error":"invalid_grant"}"#),
    .init(
        description: "userinfo", expected: [.userinfo], target: "/me",
        requestHeaders: [HeaderField("Authorization", "Bearer t")],
        responseBody: #"{"sub":"alice","email":"a@x"}"#),
    .init(
        description: "userinfo path with 401", expected: [.userinfo], target: "/oidc/userinfo", status: 401,
        requestHeaders: [HeaderField("Authorization", "Bearer t")], responseBody: ""),
    .init(
        description: "introspection", expected: [.introspection], method: "POST", target: "/oauth2/introspect",
        requestBody: "token=t&token_type_hint=access_token", responseBody: #"{"active":true,"sub":"alice"}"#),
    .init(
        description: "revocation", expected: [.revocation], method: "POST", target: "/oauth/revoke",
        requestBody: "token=t", responseHeaders: [], responseBody: ""),
    .init(
        description: "discovery", expected: [.discovery], target: "/realms/x/.well-known/openid-configuration",
        responseBody: #"{"issuer":"https://idp","token_endpoint":"https://idp/token"}"#),
    .init(
        description: "oauth metadata", expected: [.discovery], target: "/.well-known/oauth-authorization-server",
        responseBody: #"{"issuer":"https://idp"}"#),
    .init(
        description: "jwks", expected: [.jwks], target: "/oauth2/v3/certs",
        responseBody: #"{"keys":[{"kty":"RSA","kid":"1"}]}"#),
    .init(
        description: "device authorization", expected: [.deviceAuthorization], method: "POST", target: "/device/code",
        requestBody: "client_id=tv&scope=openid",
        responseBody: #"{"device_code":"d","user_code":"ABCD","verification_uri":"https://x","expires_in":600}"#),
    .init(
        description: "device token poll", expected: [.token], method: "POST", target: "/token", status: 400,
        requestBody: "grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=d&client_id=tv",
        responseBody: #"{"error":"authorization_pending"}"#),
    .init(
        description: "pushed authorization request", expected: [.pushedAuthorizationRequest], method: "POST",
        target: "/as/par",
        status: 201, requestBody: "response_type=code&client_id=app&redirect_uri=https://app/cb",
        responseBody: #"{"request_uri":"urn:ietf:params:oauth:request_uri:x","expires_in":60}"#),
    .init(
        description: "authorize with request_uri", expected: [.authorizationRequest],
        target: "/authorize?client_id=app&request_uri=urn:ietf:params:oauth:request_uri:x",
        responseHeaders: [HeaderField("Content-Type", "text/html")]),
    // Near misses.
    .init(description: "near miss: product code", expected: [], target: "/products?code=SKU-1&color=red"),
    .init(
        description: "near miss: form login", expected: [], method: "POST", target: "/login",
        requestBody: "username=a&password=b",
        responseHeaders: [HeaderField("Content-Type", "text/html")]),
    .init(
        description: "near miss: keys in a non-jwks API", expected: [], target: "/api/settings",
        responseBody: #"{"keys":["a","b"],"theme":"dark"}"#),
    .init(description: "near miss: state only", expected: [], target: "/search?state=CA&city=x"),
    .init(
        description: "near miss: bearer API returning a list", expected: [], target: "/api/items",
        requestHeaders: [HeaderField("Authorization", "Bearer t")], responseBody: #"[{"id":1}]"#),
    .init(
        description: "near miss: redirect to a page", expected: [], target: "/old", status: 301,
        responseHeaders: [HeaderField("Location", "/new?page=2")]),
]

@Suite struct RecognizerTests {
    @Test(arguments: roleCases)
    func roles(_ c: RoleCase) {
        #expect(masker.record(c.exchange).roles == c.expected, "\(c.description)")
    }

    @Test func grantTypeIsARecordedParameter() {
        let r = masker.record(roleCases.first { $0.description == "device token poll" }!.exchange)
        #expect(
            r.oauthParams.contains {
                $0.name == "grant_type" && $0.value == "urn:ietf:params:oauth:grant-type:device_code"
            })
        #expect(r.oauthParams.contains { $0.name == "device_code" && $0.fingerprint == fp("d") })
    }

    @Test func exchangesWithoutRoleKeepNoParams() {
        let r = masker.record(roleCases.first { $0.description == "near miss: product code" }!.exchange)
        #expect(r.oauthParams.isEmpty)
        #expect(!r.target.contains("SKU-1"), "code is masked wherever it appears, even off-protocol")
    }
}
