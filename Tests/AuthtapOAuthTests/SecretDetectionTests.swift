import AuthtapModel
import Foundation
import Testing

@testable import AuthtapOAuth

/// The cases a canary run through `authtap proxy` found written raw (issue 16), each shaped as the real
/// traffic it came from, plus real request and page shapes from the specifications and products named.
struct SecretDetectionTests {
    func recorded(_ e: Exchange) -> String { recordedText(masker.record(e)) }

    @Test func passwdFormField() {
        // PingFederate's HTML form adapter posts pf.username / pf.pass; older PHP apps post passwd.
        let e = CanaryTable.post(
            "/login", "application/x-www-form-urlencoded",
            "pf.username=alice&pf.pass=PfPassCanary1&passwd=PasswdCanary2&state=s1")
        let text = recorded(e)
        #expect(!text.contains("PfPassCanary1") && !text.contains("PasswdCanary2"))
        #expect(text.contains("state=s1") && text.contains("pf.username=alice"))
    }

    @Test func camelAndPascalCaseJSONKeys() {
        // MSAL / AWS Cognito style bodies: {"AuthenticationResult":{"AccessToken":…,"IdToken":…,"RefreshToken":…}}.
        let body =
            #"{"AuthenticationResult":{"AccessToken":"AccessCanary1","IdToken":"IdCanary2","#
            + #""RefreshToken":"RefreshCanary3","TokenType":"Bearer","ExpiresIn":3600},"idToken":"IdCanary4","#
            + #""refreshToken":"RefreshCanary5"}"#
        let text = recorded(CanaryTable.response("application/x-amz-json-1.1", body))
        for canary in ["AccessCanary1", "IdCanary2", "RefreshCanary3", "IdCanary4", "RefreshCanary5"] {
            #expect(!text.contains(canary), "\(canary)")
        }
        #expect(text.contains(#""TokenType":"Bearer""#) && text.contains(#""ExpiresIn":3600"#))
    }

    @Test func idTokenHintKeepsClaimsAndLosesItsSignature() {
        // OIDC RP-Initiated Logout 1.0 §2: GET /logout?id_token_hint=JWT&post_logout_redirect_uri=…
        let signature = "HintSignatureCanary0123456789abcdef"
        let jwt = "\(jwtHeader).\(jwtClaims).\(signature)"
        let e = baseExchange(target: "/logout?id_token_hint=\(jwt)&post_logout_redirect_uri=https%3A%2F%2Fapp.test%2F")
        let r = masker.record(e)
        #expect(!r.target.contains(signature))
        #expect(r.target.contains("\(jwtHeader).\(jwtClaims).[masked id_token_hint-signature"))
        #expect(r.target.contains("post_logout_redirect_uri=https%3A%2F%2Fapp.test%2F"))
    }

    @Test func clientSecretInMultipart() {
        // curl -F client_id=app -F client_secret=… (RFC 7578 form-data, as curl sends it).
        let body =
            "--------------------------d74496d66958873e\r\n"
            + "Content-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n"
            + "--------------------------d74496d66958873e\r\n"
            + "Content-Disposition: form-data; name=\"client_id\"\r\n\r\napp\r\n"
            + "--------------------------d74496d66958873e\r\n"
            + "Content-Disposition: form-data; name=\"client_secret\"\r\n\r\nMultipartSecretCanary\r\n"
            + "--------------------------d74496d66958873e--\r\n"
        let e = CanaryTable.post(
            "/token", "multipart/form-data; boundary=------------------------d74496d66958873e", body)
        let r = masker.record(e)
        let text = recordedText(r)
        #expect(!text.contains("MultipartSecretCanary"))
        #expect(text.contains("name=\"client_id\"\r\n\r\napp\r\n"))
        #expect(r.oauthParams.contains { $0.name == "client_secret" && $0.fingerprint != nil })
    }

    @Test func aRandomMultipartBoundaryStaysReadable() {
        // python-requests' boundary: 32 hex digits (urllib3 filepost.choose_boundary).
        let boundary = "a444678f784bebac84642ca40e1adf99"
        let body =
            "--\(boundary)\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nBoundaryCanary\r\n"
            + "--\(boundary)--\r\n"
        let once = masker.record(CanaryTable.post("/upload", "multipart/form-data; boundary=\(boundary)", body))
        #expect(once.requestHeaders.value(of: "content-type") == "multipart/form-data; boundary=\(boundary)")
        #expect(SecretAudit.hits(in: once, masker: masker).isEmpty)
        #expect(!recordedText(once).contains("BoundaryCanary"))
    }

    @Test func binaryFilePartsAreNotKept() {
        var bytes = Array("--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.png\"\r\n\r\n".utf8)
        bytes += [0x89, 0x50, 0x4E, 0x47, 0x00, 0xFF, 0xFE] + Array("\r\n--b\r\n".utf8)
        bytes += Array("Content-Disposition: form-data; name=\"password\"\r\n\r\nFilePartCanary\r\n--b--\r\n".utf8)
        var e = baseExchange(method: "POST", target: "/upload")
        e.requestHeaders = [HeaderField("Content-Type", "multipart/form-data; boundary=b")]
        e.requestBody = CapturedBody(bytes: bytes, size: bytes.count)
        let text = String(decoding: masker.record(e).requestBody.bytes, as: UTF8.self)
        #expect(text.contains("[authtap: file part not kept"))
        #expect(!text.contains("FilePartCanary") && !text.contains("PNG"))
    }

    @Test func dpopHeader() {
        // RFC 9449 §4.1: the DPoP proof is a JWT in its own header; Authorization uses the DPoP scheme.
        var e = baseExchange(method: "POST", target: "/token")
        let proof = "\(jwtHeader).\(jwtClaims).DpopProofSignatureCanary"
        e.requestHeaders = [HeaderField("DPoP", proof), HeaderField("Authorization", "DPoP DpopAccessCanary")]
        let text = recorded(e)
        #expect(!text.contains("DpopProofSignatureCanary") && !text.contains("DpopAccessCanary"))
        #expect(text.contains("\(jwtHeader).\(jwtClaims).[masked dpop-signature"))
    }

    @Test func passwordObjectIsMaskedWhole() {
        // Okta Authentication API: {"username":…,"password":{"value":…}} (Okta Identity Engine credentials).
        let e = CanaryTable.post(
            "/api/v1/authn", "application/json",
            #"{"username":"alice","password":{"value":"ObjectCanary"},"options":{"multi":true}}"#)
        let text = String(decoding: masker.record(e).requestBody.bytes, as: UTF8.self)
        #expect(!text.contains("ObjectCanary") && !text.contains(#""value""#))
        #expect(text.contains(#""username":"alice""#) && text.contains(#""multi":true"#))
    }

    @Test func samlResponseInAFormPost() {
        // SAML 2.0 HTTP-POST binding (Bindings §3.5.4): SAMLResponse=base64&RelayState=…
        let assertion = Data("<samlp:Response><saml:Assertion>SamlCanary</saml:Assertion></samlp:Response>".utf8)
            .base64EncodedString()
        let e = CanaryTable.post(
            "/saml/acs", "application/x-www-form-urlencoded",
            "SAMLResponse=\(FormCoding.encode(assertion))&RelayState=%2Fhome")
        let text = recorded(e)
        #expect(!text.contains(String(assertion.prefix(20))))
        #expect(text.contains("RelayState=%2Fhome"))
    }

    @Test func fragmentInsideAJSONString() {
        // An SPA logs its callback URL into a JSON error report.
        let e = CanaryTable.post(
            "/log", "application/json",
            #"{"url":"https://app.test/cb#access_token=FragmentJSONCanary&token_type=Bearer&state=s9"}"#)
        let text = recorded(e)
        #expect(!text.contains("FragmentJSONCanary"))
        #expect(text.contains("token_type=Bearer&state=s9"))
    }

    @Test func formBodyLabelledJSON() {
        let e = CanaryTable.post(
            "/token", "application/json",
            "grant_type=authorization_code&code=WrongLabelCanary&redirect_uri=https%3A%2F%2Fapp.test%2Fcb")
        let r = masker.record(e)
        #expect(!recordedText(r).contains("WrongLabelCanary"))
        #expect(r.oauthParams.contains { $0.name == "grant_type" && $0.value == "authorization_code" })
    }

    @Test func wsSecurityUsernameTokenAndBinarySecurityToken() {
        // OASIS WS-Security UsernameToken Profile 1.1 §3.1 and X.509 Token Profile §3.1 examples.
        let soap = """
            <s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
            <s:Header><o:Security><o:UsernameToken><o:Username>alice</o:Username>
            <o:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">SoapPasswordCanary</o:Password>
            </o:UsernameToken><o:BinarySecurityToken ValueType="X509v3">MIIBinaryTokenCanary</o:BinarySecurityToken>
            </o:Security></s:Header><s:Body><Ping/></s:Body></s:Envelope>
            """
        let text = String(
            decoding: masker.record(CanaryTable.post("/Service.svc", "application/soap+xml; charset=utf-8", soap))
                .requestBody.bytes, as: UTF8.self)
        #expect(!text.contains("SoapPasswordCanary") && !text.contains("MIIBinaryTokenCanary"), "\(text)")
        #expect(text.contains("<o:Username>alice</o:Username>"))
    }

    @Test func keycloakLoginPageHiddenInputs() {
        // Keycloak's login form and a Rails page: hidden inputs and a csrf meta tag.
        let html = """
            <html><head><meta name="csrf-token" content="MetaCsrfCanary0123456789"></head><body>
            <form action="/realms/x/login-actions/authenticate?session_code=SessionCodeCanary&execution=e1&client_id=app&tab_id=t1" method="post">
            <input type="hidden" name="authenticity_token" value="HiddenTokenCanary">
            <input id="password" name="password" type="password" value="HtmlPasswordCanary">
            <input type="hidden" name="state" value="readable-state"></form></body></html>
            """
        let text = String(
            decoding: masker.record(CanaryTable.response("text/html; charset=utf-8", html)).responseBody.bytes,
            as: UTF8.self)
        for canary in ["MetaCsrfCanary", "SessionCodeCanary", "HiddenTokenCanary", "HtmlPasswordCanary"] {
            #expect(!text.contains(canary), "\(canary): \(text)")
        }
        #expect(text.contains(#"value="readable-state""#) && text.contains("client_id=app"))
    }

    @Test func plainPKCEChallengeIsMaskedAndS256StaysReadable() {
        // RFC 7636 §4.2: with method plain (or none) the challenge is the verifier itself.
        let plain = masker.record(
            baseExchange(
                target: "/authorize?response_type=code&code_challenge=PlainVerifierCanary&code_challenge_method=plain"))
        #expect(!plain.target.contains("PlainVerifierCanary"))
        let none = masker.record(baseExchange(target: "/authorize?code_challenge=NoMethodCanary&state=s"))
        #expect(!none.target.contains("NoMethodCanary"))
        let s256 = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  // RFC 7636 Appendix B
        let kept = masker.record(baseExchange(target: "/authorize?code_challenge=\(s256)&code_challenge_method=S256"))
        #expect(kept.target.contains(s256))
    }

    @Test(arguments: [
        "state", "nonce", "client_id", "redirect_uri", "scope", "response_type", "grant_type", "token_type",
        "expires_in", "code_challenge_method", "error", "error_description", "token_endpoint", "login_hint",
        "token_type_hint", "client_assertion_type", "requested_token_type", "session_state", "error_code",
        "id_token_signing_alg_values_supported", "token_endpoint_auth_method", "authorization_endpoint",
        "end_session_endpoint", "max_age", "prompt", "acr_values", "RelayState", "kid", "iss", "aud",
    ])
    func readableNames(_ name: String) {
        #expect(!Masker.isSecret(name), "\(name)")
    }

    @Test func readableRandomFieldsStayReadable() {
        // Values that look random by design: the analyzer compares them, so the sweep leaves them alone.
        let state = "af0ifjsldkj3Kq8sPz0d9xW2mR"
        let e = baseExchange(
            target: "/cb?state=\(state)&nonce=n-0S6_WzA2Mj9xq8L1pZ0kT3vB&client_id=0oa1b2c3d4e5f6g7h8i9")
        let r = masker.record(e)
        #expect(r.target == e.target)
    }
}
