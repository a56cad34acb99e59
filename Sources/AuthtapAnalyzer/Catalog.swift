import AuthtapModel

/// A rule as `authtap rules` lists it.
public struct RuleInfo: Sendable {
    public var id: String
    /// The highest severity the rule reports.
    public var severity: Severity
    public var title: String
    public var checks: String
}

public enum RuleCatalog {
    public static let rules: [RuleInfo] = [
        .init(id: "code-reuse", severity: .error, title: "Authorization code sent to the token endpoint more than once",
              checks: "Equal code fingerprints across token requests; names the attempt that succeeded; a duplicate within 2 s is the double-render/double-submit pattern. Also the server's own 'code already used' errors (Entra AADSTS54005, Facebook, Slack)."),
        .init(id: "code-expired", severity: .error, title: "Authorization code expired before it was exchanged",
              checks: "invalid_grant after a long gap between the authorization response and the token request (reports the gap), or a server message saying the code expired."),
        .init(id: "state-mismatch", severity: .error, title: "The callback's state does not match /authorize",
              checks: "Callback state differs from the one sent, is missing, or was never issued; warns on an authorization request with neither state nor PKCE."),
        .init(id: "non-json-response", severity: .error, title: "An OAuth endpoint answered with something other than the JSON it must send",
              checks: "HTML (title; login page, WAF/CDN challenge, 5xx page), text/plain, form-encoded (GitHub), empty, truncated or malformed JSON (parser offset), JSON with a wrong Content-Type, success without access_token/token_type or with a non-numeric expires_in, an error with HTTP 200."),
        .init(id: "tls-fault", severity: .error, title: "A TLS handshake failed",
              checks: "Upstream certificate untrusted, expired, not yet valid, wrong host; protocol version; reset or alert during the handshake; the client rejecting the authtap CA."),
        .init(id: "redirect-uri-mismatch", severity: .error, title: "redirect_uri differs between /authorize and /token",
              checks: "Exact difference (trailing slash, scheme, host, port, path case, query), or the server's redirect_uri error at /token or /authorize."),
        .init(id: "pkce-mismatch", severity: .error, title: "PKCE verification cannot succeed",
              checks: "S256(code_verifier) ≠ code_challenge, verifier missing, verifier without challenge, plain method, verifier length/charset (RFC 7636 §4.1), or the server's PKCE error."),
        .init(id: "refresh-token-reuse", severity: .error, title: "A refresh token was used again after rotation, or was rejected",
              checks: "Refresh token fingerprints across rotations; tells expired from revoked where the evidence allows."),
        .init(id: "invalid-client", severity: .error, title: "Client authentication failed or is ambiguous",
              checks: "401/invalid_client (with how the client authenticated), credentials in both the Basic header and the body, client_id differing between /authorize and /token."),
        .init(id: "unsupported-grant-type", severity: .error, title: "The server does not support the grant type sent",
              checks: "unsupported_grant_type errors, with the grant_type that was sent."),
        .init(id: "invalid-scope", severity: .error, title: "Scope rejected, or granted differently from requested",
              checks: "invalid_scope errors; a warning when the granted scope lacks requested scopes."),
        .init(id: "invalid-request", severity: .error, title: "The token request is malformed",
              checks: "Body not application/x-www-form-urlencoded (JSON is a common mistake), a GET to the token endpoint, mandatory parameters missing for the grant type, invalid_request errors."),
        .init(id: "clock-skew", severity: .warning, title: "Clocks disagree",
              checks: "JWT iat/nbf in the future or exp already past relative to the server's Date header; the local clock against the server's Date."),
        .init(id: "jwt-invalid", severity: .error, title: "A token's JWT is invalid",
              checks: "Malformed id_token, alg none, aud without the client_id, iss not the discovered issuer, nonce different from /authorize, kid absent from the captured JWKS."),
        .init(id: "missing-leg", severity: .warning, title: "A code was issued but its token request was never seen",
              checks: "Authorization response or callback with a code whose fingerprint no token request carries: the back channel bypasses the proxy."),
        .init(id: "upstream-error", severity: .error, title: "The authorization server failed or was unreachable",
              checks: "5xx, a gateway/WAF page, or connection refused/DNS failure/timeout/reset for an OAuth endpoint."),
        .init(id: "invalid-grant", severity: .error, title: "The server rejected the grant for a reason the evidence does not pin down",
              checks: "invalid_grant that no more specific rule explains, with the causes left to check."),
        .init(id: "authorization-error", severity: .warning, title: "The authorization server returned an error to the callback",
              checks: "access_denied, login_required, consent_required and other errors at /authorize or the callback."),
    ]

    public static func info(_ id: String) -> RuleInfo? { rules.first { $0.id == id } }
}
