import Testing

@testable import AuthtapOAuth

private func runs(_ text: String) -> [String] {
    var bytes = Array(text.utf8)
    return bytes.withUnsafeMutableBufferPointer { b in
        EntropySweep.highEntropyRuns(UnsafeBufferPointer(b)).map { String(decoding: b[$0], as: UTF8.self) }
    }
}

/// A seeded generator (SplitMix64), so the statistical tests are the same on every run.
private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct EntropyArithmeticTests {
    @Test(arguments: [("aaaaaaaa", 0.0), ("abababab", 1.0), ("abcdabcd", 2.0), ("0123456789abcdef", 4.0)])
    func entropyOfKnownStrings(_ text: String, _ bits: Double) {
        #expect(abs(EntropySweep.entropy(Array(text.utf8)) - bits) < 1e-9)
    }

    @Test func entropyOfEveryByteIsEight() {
        #expect(abs(EntropySweep.entropy((0...255).map { UInt8($0) }) - 8) < 1e-9)
    }

    @Test(arguments: [1.0, 1.5, 2.0, 3.0, 7.25, 20.0, 1e6, 0.001])
    func log2IsAccurate(_ x: Double) {
        // 2^log2(x) == x, checked by halving and doubling instead of a library exp.
        let y = EntropySweep.log2(x)
        #expect(abs(EntropySweep.log2(x * 2) - (y + 1)) < 1e-12)
        #expect(abs(EntropySweep.log2(x * x) - 2 * y) < 1e-9)
    }

    @Test func thresholdGrowsWithLengthAndStopsAtDetectSecretsLimits() {
        var last = 0.0
        for n in [20, 24, 32, 43, 64] {
            let t = EntropySweep.threshold(length: n, alphabet: 64, spread: 2.7, cap: EntropySweep.base64Cap)
            #expect(t > last)
            last = t
        }
        #expect(EntropySweep.threshold(length: 4000, alphabet: 64, spread: 2.7, cap: EntropySweep.base64Cap) == 4.5)
        #expect(EntropySweep.threshold(length: 4000, alphabet: 16, spread: 2.7, cap: EntropySweep.hexCap) == 3.0)
    }
}

@Suite struct EntropySweepPositiveTests {
    /// Real-shaped secrets, each caught whole.
    @Test(arguments: [
        // RFC 7636 Appendix B: a PKCE code_verifier, 43 characters of base64url.
        ("PKCE verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        // A 32-byte value in hex (a GitHub OAuth app's client secret is 40 hex).
        ("hex 32 bytes", "8f14e45fceea167a5a36dedd4bea2543a3c5f1d87b0e9c2d4f6a8b1c3e5d7f90"),
        ("hex 20 bytes", "1f3870be274f6c49b3e31a0c6728957f9b2c4d6e"),
        ("upper hex", "C4CA4238A0B923820DCC509A6F75849B"),
        // RFC 7517 Appendix A.2: the EC private key's "d".
        ("JWK EC d", "870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE"),
        // RFC 6749 §2.3.1/§4.1.3: Basic credentials s6BhdRkqt3:gX1fBat3bV, base64 of a client id and secret.
        ("Basic client credentials", "czZCaGRSa3F0MzpnWDFmQmF0M2JW"),
        // AWS documentation's example secret access key: standard base64 with "/".
        ("AWS secret key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        // Azurite's published development account key: standard base64 with "/" and padding.
        (
            "Azure storage key",
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
        ),
        ("Okta opaque token", "00Oq5nQ0u7g3cFcKHjRtPzYkXbBw3NvJ8sLr1mZdE2"),
        (
            "Azure AD refresh-token-like",
            "0.AVYA7xLs3QbZ-kKzj2-9KeTIhh8PqGCeG5ZMtXpQ8z7rJ1JWAKg.AgABAAEAAAD--DLA3VO7QrddgJg7WevrAgDs_wQA9P9ncuzWb"
        ),
        ("Google refresh token body", "1//0gKfZpT2xW9qLmNcVbR7sYeU3aH6dJ0oIkP4nE8tQwZyXcV5bM1"),
        ("lower+digit session id", "k3v9x2m8q7w1z5n4b6c0d8f2"),
        ("upper+digit key", "Q7ZK3M9XW2P8N4R6T1V5Y0B3"),
    ])
    func caught(_ note: String, _ secret: String) {
        #expect(!runs(secret).isEmpty, "\(note)")
        #expect(EntropySweep.isRandomLooking(secret), "\(note)")
    }

    @Test func pkceVerifierInAFormBodyIsCaughtExactly() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        #expect(runs("grant_type=authorization_code&code_verifier=\(verifier)&client_id=s6BhdRkqt3") == [verifier])
    }

    @Test func paddingBelongsToTheRunAndAnEqualsSignBeforeAValueDoesNot() {
        #expect(runs(#"{"k":"czZCaGRSa3F0MzpnWDFmQmF0M2JWdGVzdA=="}"#) == ["czZCaGRSa3F0MzpnWDFmQmF0M2JWdGVzdA=="])
        #expect(runs("secret=czZCaGRSa3F0MzpnWDFmQmF0M2JW&x=1") == ["czZCaGRSa3F0MzpnWDFmQmF0M2JW"])
    }

    @Test func standardBase64StaysOneRunAcrossItsSlashes() {
        let aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        #expect(runs("aws_secret=\(aws);") == [aws])
        let leadingSlash = "/575yx8xm5MslfY5ubiheyEd7P4zDL/ak6J0kGODK"
        #expect(runs(#"{"k":""# + leadingSlash + #""}"#) == [leadingSlash])
    }

    @Test func aRandomIdInsideAPathIsCaughtAloneNotThePath() {
        let id = "8f14e45fceea167a5a36dedd4bea2543"
        #expect(runs("https://api.example.com/v1/users/\(id)/sessions") == [id])
        let token = "Xq3vT9mB2kLp8RwZ4nYc6HdJ1fGs5aVe"
        #expect(runs("/oauth2/v1/keys/\(token)?x=1") == [token])
    }

    @Test func googleAccessTokenBodyIsCaught() {
        let body = "a0AfB_byC7xQ9n2mR4kT8vW1yZ3pL6sD5fG0hJ2kM4nP7qR9tV1wX3zB5cE8gH0jK2mN4pQ6sU8wY"
        #expect(runs("Authorization: Bearer ya29.\(body)") == [body])
    }

    static let alphabets: [String: String] = [
        "base64url": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        "alnum": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "lower+digits": "abcdefghijklmnopqrstuvwxyz0123456789",
        "upper+digits": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        "hex": "0123456789abcdef",
        "base64": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    ]

    /// Random tokens of every common alphabet and of lengths 20 to 128 are caught whole nearly always.
    @Test(
        arguments: ["base64url", "alnum", "lower+digits", "upper+digits", "hex", "base64"], [20, 24, 32, 43, 64, 128])
    func randomTokensAreCaught(_ name: String, _ length: Int) {
        let symbols = Array(Self.alphabets[name]!.utf8)
        var rng = SplitMix(state: UInt64(length) &* 7919 &+ UInt64(symbols.count))
        let trials = 500
        var caught = 0
        for _ in 0..<trials {
            let token = String(decoding: (0..<length).map { _ in symbols.randomElement(using: &rng)! }, as: UTF8.self)
            if runs(" \(token) ") == [token] { caught += 1 }
        }
        // Lower+digit and upper+digit tokens with long letter stretches read like words: up to 2 % slip.
        let floor = name.hasSuffix("+digits") ? 0.98 : 0.99
        #expect(Double(caught) / Double(trials) >= floor, "\(name) length \(length): \(caught)/\(trials)")
    }
}

@Suite struct EntropySweepNegativeTests {
    /// Values from real OAuth traffic, none a secret.
    @Test(arguments: [
        // https://accounts.google.com/.well-known/openid-configuration (keys and values).
        "https://accounts.google.com/o/oauth2/v2/auth", "https://oauth2.googleapis.com/token",
        "https://openidconnect.googleapis.com/v1/userinfo", "https://www.googleapis.com/oauth2/v3/certs",
        "https://oauth2.googleapis.com/device/code", "authorization_endpoint", "token_endpoint_auth_methods_supported",
        "client_secret_post", "client_secret_basic", "id_token_signing_alg_values_supported",
        "code_challenge_methods_supported", "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer", "https://www.googleapis.com/auth/userinfo.email",
        // https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration
        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        "https://login.microsoftonline.com/{tenantid}/v2.0", "https://graph.microsoft.com/oidc/userinfo",
        "frontchannel_logout_supported", "http_logout_supported", "request_uri_parameter_supported",
        // An Okta org authorization server's metadata (https://{org}.okta.com/.well-known/openid-configuration).
        "https://dev-123456.okta.com/oauth2/default/v1/authorize",
        "urn:ietf:params:oauth:grant-type:token-exchange", "urn:okta:params:oauth:grant-type:otp",
        // RFC 6749 §4.1.1 request and RFC 8414 paths.
        "/authorize?response_type=code&client_id=s6BhdRkqt3&state=xyz"
            + "&redirect_uri=https%3A%2F%2Fclient%2Eexample%2Ecom%2Fcb",
        "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration",
        "/oauth2/v1/authorize", "/api/v1/users/me/factors/catalog",
        // error_description texts as providers send them.
        "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.",
        "AADSTS700082: The refresh token has expired due to inactivity.",
        "AADSTS50011: The redirect URI specified in the request does not match the redirect URIs configured.",
        "Token has been expired or revoked.", "Bad Request", "invalid_grant",
        "The authorization server does not support obtaining an authorization code using this method.",
        "The+provided+authorization+grant+is+invalid%2C+expired%2C+revoked",
        // Identifiers, UUIDs, dates, agents, types, addresses, scopes.
        "getElementsByClassName", "AuthorizationEndpointHandler", "XMLHttpRequestEventTarget",
        "OAuth2AuthorizationCodeGrant", "contentSecurityPolicyReportOnly", "queryCommandSupported",
        "setup-windows-x64-installer", "draft-ietf-oauth-v2-1-10",
        "IETF-OAuth-2-0-Security-BCP", "s3-eu-west-1.amazonaws.com", "max-age=31536000; includeSubDomains",
        "9b2c5e2e-3b55-4c6a-8f7e-0d3c2a1b4e5f", "{9B2C5E2E-3B55-4C6A-8F7E-0D3C2A1B4E5F}",
        "2024-01-15T10:30:00.000Z", "Mon, 15 Jan 2024 10:30:00 GMT", "20240115103000123456",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "application/x-www-form-urlencoded; charset=UTF-8",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "first.last+oauth-tests@example.com", "openid profile email offline_access",
        "openid+profile+email+offline_access", "https://www.googleapis.com/auth/drive.readonly",
        // jwt.io's example token: the masker handles JWTs, the sweep leaves them alone.
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIy"
            + "fQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        // An unsigned JWT (alg none) ends in a dot.
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QifQ.",
        // authtap's own markers.
        "[masked refresh_token len=120 fp=0123456789ab]", "Bearer [masked jwt len=812 fp=a1b2c3d4e5f6]",
        "[masked github-fine-grained-pat len=93 fp=ffffffffffff]",
    ])
    func notFlagged(_ value: String) {
        #expect(runs(value).isEmpty, "\(runs(value))")
        #expect(!EntropySweep.isRandomLooking(value[...]))
    }

    @Test func shortRandomIsBelowTheMinimum() {
        #expect(runs("Xq3vT9mB2kLp8RwZ4nY").isEmpty)
        #expect(runs("Xq3vT9mB2kLp8RwZ4nYc") == ["Xq3vT9mB2kLp8RwZ4nYc"])
    }

    @Test func aRunNextToAMarkerIsStillJudged() {
        let token = "Xq3vT9mB2kLp8RwZ4nYc6HdJ1fGs5aVe"
        #expect(runs("[masked code len=43 fp=0123456789ab] \(token)") == [token])
    }
}
