import AuthtapModel

/// A code_verifier that cannot match its challenge, and weak PKCE at /authorize.
struct PKCEMismatch: Rule {
    var id: RuleID { "pkce-mismatch" }
    var severity: Severity { .error }
    var title: String { "PKCE verification cannot succeed" }
    var checks: String {
        """
        S256(code_verifier) ≠ code_challenge, verifier missing, verifier without challenge, plain method, verifier \
        length/charset (RFC 7636 §4.1), or the server's PKCE error.
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.facts {
            if f.roles.contains(.token), f.method != "GET" { tokenRequest(f, &c) }
            if f.roles.contains(.authorizationRequest) { authorizeRequest(f, &c) }
        }
        for f in c.reportedOutsideToken([.pkceMismatch]) {
            c.addReported(
                id, .error, "The server refused the PKCE parameters of the authorization request", f,
                meaning: "The code_challenge is missing, too short or malformed, or its method is not one it allows.",
                fix: """
                    Send code_challenge=BASE64URL(SHA256(code_verifier)) (43 characters, no padding) with \
                    code_challenge_method=S256 on every authorization request, from a verifier of 43–128 characters.
                    """)
        }
    }

    /// The challenge's method at /authorize.
    func authorizeRequest(_ f: ExchangeFacts, _ c: inout RuleContext) {
        let challenge = f.value("code_challenge", .request)
        if challenge != nil, f.value("code_challenge_method", .request) == nil {
            c.add(
                id, .warning, "code_challenge sent without code_challenge_method: the server assumes plain", f,
                explanation: """
                    RFC 7636 §4.3: without code_challenge_method the server treats the challenge as plain, so a client \
                    that computed S256 will fail verification, and plain gives no protection if the challenge leaks.
                    """,
                fix: "Send code_challenge_method=S256 with the challenge.",
                evidence: ["code_challenge": challenge ?? ""])
        } else if f.value("code_challenge_method", .request) == "plain" {
            c.add(
                id, .warning, "PKCE uses the plain method", f,
                explanation: """
                    code_challenge_method=plain sends the verifier itself as the challenge; anyone who sees the \
                    authorization URL can redeem the code. Many servers reject plain outright.
                    """,
                fix: "Use S256: code_challenge = BASE64URL(SHA256(code_verifier)).",
                evidence: ["code_challenge_method": "plain"])
        }
    }

    /// The verifier at /token against the challenge at /authorize.
    func tokenRequest(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard f.isCodeGrant else { return }
        let auth = c.authorizeFor(f)
        let challenge = auth?.value("code_challenge", .request)
        let method = auth?.value("code_challenge_method", .request) ?? (challenge == nil ? nil : "plain")
        let verifier = f.param("code_verifier", .request)
        let s256 = f.value("code_verifier_s256", .derived)
        let evidence = [
            ("code_challenge", challenge), ("code_challenge_method", method),
            ("code_verifier", verifier?.value), ("S256(code_verifier)", s256),
        ]
        .reduce(into: [String: String]()) { e, pair in e[pair.0] = pair.1 }
        let more = auth.map { [$0] } ?? []
        verifierShape(f, verifier, more: more, evidence: evidence, &c)
        let mismatch: Mismatch
        if let challenge, method == "S256", let s256, s256 != challenge {
            mismatch = .s256(challenge: challenge, s256: s256)
        } else if method == "plain", let plain = auth?.fingerprint("code_challenge", .request), let verifier,
            let verifierPrint = verifier.fingerprint, plain != verifierPrint
        {
            mismatch = .plain(challenge: plain, verifier: verifierPrint)
        } else if challenge != nil, verifier == nil {
            mismatch = .noVerifier
        } else if auth != nil, challenge == nil, verifier != nil {
            mismatch = .noChallenge
        } else if f.errorClass == .pkceMismatch {
            mismatch = .serverRejected
        } else {
            return
        }
        report(mismatch, f, authorize: auth, more: more, evidence: evidence, &c)
    }

    /// What is wrong between the challenge and the verifier.
    enum Mismatch {
        case s256(challenge: String, s256: String)
        /// Fingerprints of the plain challenge and of the verifier.
        case plain(challenge: String, verifier: String)
        case noVerifier
        case noChallenge
        case serverRejected
    }

    private func report(
        _ mismatch: Mismatch, _ f: ExchangeFacts, authorize auth: ExchangeFacts?, more: [ExchangeFacts],
        evidence: [String: String], _ c: inout RuleContext
    ) {
        let authID = auth.map { "\($0.id)" } ?? "?"
        switch mismatch {
        case .s256(let challenge, let s256):
            c.add(
                id, .error, "S256(code_verifier) does not match the code_challenge", f, more: more,
                explanation: """
                    The authorization request #\(authID) sent code_challenge=\(challenge); SHA-256 of the \
                    code_verifier sent to /token is \(s256). The verifier is not the one the challenge was made from: \
                    it was regenerated (a new PKCE pair per render or per page load), read from the wrong storage, or \
                    belongs to another sign-in tab.
                    """,
                fix: """
                    Generate the verifier once per authorization, store it with the state (sessionStorage or server \
                    session), and send that same verifier to /token; derive the challenge as \
                    BASE64URL(SHA256(verifier)) with no padding.
                    """,
                evidence: evidence)
        case .plain(let plain, let verifierPrint):
            c.add(
                id, .error, "code_verifier is not the plain code_challenge", f, more: more,
                explanation: "The authorization request #\(authID) sent a plain code_challenge (fingerprint \(plain)); "
                    + "the code_verifier sent to /token has fingerprint \(verifierPrint). With method plain the two "
                    + "must be the same string.",
                fix: "Send the same verifier the challenge was made from, generated once per authorization; "
                    + "better, switch to code_challenge_method=S256.",
                evidence: evidence)
        case .noVerifier:
            c.add(
                id, .error, "code_challenge was sent but the token request has no code_verifier", f, more: more,
                explanation: """
                    The authorization request #\(authID) used PKCE, so the server will only redeem the code with the \
                    matching code_verifier, and this token request sent none.
                    """,
                fix: "Send code_verifier with the token request (the value the challenge was derived from).",
                evidence: evidence)
        case .noChallenge:
            c.add(
                id, f.is2xx ? .warning : .error,
                "code_verifier sent without any code_challenge at /authorize", f, more: more,
                explanation: """
                    The token request sends a code_verifier, but the authorization request #\(authID) had no \
                    code_challenge. Strict servers reject this; others ignore the verifier, so PKCE protects nothing.
                    """,
                fix: "Send code_challenge and code_challenge_method=S256 in the authorization request.",
                evidence: evidence)
        case .serverRejected:
            c.add(
                id, .error, "The server rejected the PKCE verification", f, more: more,
                explanation: "\(f.ex.host) answered \(f.error?.summary ?? "an error")."
                    + (auth == nil
                        ? """
                         The authorization request was not captured, so authtap cannot compare the challenge itself.
                        """ : ""),
                fix: """
                    Make sure the verifier sent to /token is the one whose S256 hash was sent as code_challenge, \
                    generated once per authorization.
                    """,
                evidence: evidence)
        }
    }

    /// The verifier's length and alphabet (RFC 7636 §4.1).
    func verifierShape(
        _ f: ExchangeFacts, _ verifier: OAuthParam?, more: [ExchangeFacts], evidence: [String: String],
        _ c: inout RuleContext
    ) {
        if let verifier, let length = Int(verifier.value.split(separator: "len=").last?.prefix { $0.isNumber } ?? ""),
            !(43...128).contains(length)
        {
            c.add(
                id, .error, "code_verifier has an invalid length (\(length))", f, more: more,
                explanation: """
                    RFC 7636 §4.1 requires a code_verifier of 43 to 128 characters; this one has \(length). Servers \
                    reject it, or worse, accept it only sometimes.
                    """,
                fix: "Generate 32 random bytes and base64url-encode them without padding (43 characters).",
                evidence: evidence)
        }
        if f.value("code_verifier_charset", .derived) == "invalid" {
            c.add(
                id, .error, "code_verifier has characters outside [A-Za-z0-9-._~]", f, more: more,
                explanation: """
                    RFC 7636 §4.1 allows only unreserved characters in code_verifier; '+', '/', '=' (standard base64) \
                    are the usual culprits.
                    """,
                fix: "Use base64url without padding for the verifier.",
                evidence: evidence)
        }
    }
}
