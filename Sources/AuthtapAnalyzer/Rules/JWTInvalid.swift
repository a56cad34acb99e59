import AuthtapModel

/// A token's JWT that a client must reject: unparseable, unsigned, wrong audience, issuer, nonce or key.
struct JWTInvalid: Rule {
    var id: RuleID { "jwt-invalid" }
    var severity: Severity { .error }
    var title: String { "A token's JWT is invalid" }
    var checks: String {
        """
        Malformed id_token, alg none, a signature that does not verify against the key the captured JWKS \
        published (checked at capture time, while the raw token is in memory), aud without the client_id, iss not \
        the discovered issuer, nonce different from /authorize, kid absent from the captured JWKS; a server \
        refusing an assertion whose signature, audience or issuer does not verify.
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.tokenRequests {
            check(f, &c)
            if f.errorClass == .jwtInvalid, let report = f.error {
                c.add(
                    id, .error, "The server refused a JWT the client sent", f,
                    explanation: """
                        \(f.ex.host) answered \(report.summary): the assertion (or client assertion) does not verify: \
                        its signature does not match a key the server holds for this client, or its audience or \
                        issuer is not what the server expects.
                        """,
                    fix: """
                        Sign with the private key whose public key (or certificate) is registered for this client, \
                        and set aud to the server's token endpoint (or issuer) and iss/sub to the client's id.
                        """,
                    evidence: ["grant_type": f.grantType ?? "(none)"])
            }
        }
    }

    func check(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard f.tokenSucceeded, case .success(let body)? = f.json else { return }
        for name in ["id_token", "access_token"] {
            guard body[name] != nil else { continue }
            guard let jwt = f.jwt(name) else {
                if name == "id_token" {
                    c.add(
                        id, .error, "id_token is not a JWT", f,
                        explanation: """
                            OpenID Connect Core §2 requires the id_token to be a signed JWT; this one is not three \
                            base64url segments with a JSON header.
                            """,
                        fix: """
                            Check the server's OIDC configuration (is 'openid' in scope, is the token endpoint the \
                            OIDC one?).
                            """,
                        evidence: ["id_token": body[name]?.text ?? ""])
                }
                continue
            }
            let alg = jwt.header["alg"]?.string ?? "(none)"
            if let fp = f.fingerprint(name, .responseBody), let check = c.signatureVerdicts[fp],
                check.verdict == "invalid"
            {
                c.add(
                    id, .error,
                    """
                    \(name) signature does not verify against the captured JWKS
                    """, f, more: check.at.id == f.id ? [] : [check.at],
                    explanation: """
                        authtap checked the \(name) (alg \(alg), kid \(jwt.header["kid"]?.string ?? "none")) against \
                        the key the JWKS published under that kid\(check.at.id == f.id ? "" : " at #\(check.at.id)"), \
                        while it still had the raw token: the signature is wrong. The token was altered, signed with \
                        another key (a rotated or test key), or the JWKS belongs to another issuer.
                        """,
                    fix: """
                        Compare the token's iss with the JWKS's issuer, and check the signing key configuration on the \
                        server (key rotation publishes the new key before signing with it).
                        """,
                    evidence: [
                        "alg": alg, "kid": jwt.header["kid"]?.string ?? "(none)", "token_fingerprint": fp,
                        "verdict": "invalid",
                    ])
            }
            if alg.lowercased() == "none" {
                c.add(
                    id, .error, "\(name) is unsigned (alg: none)", f,
                    explanation: "The \(name) header says alg=none: anyone can forge it. Libraries must reject it.",
                    fix: "Configure the server to sign tokens (RS256/ES256) and the client to reject alg=none.",
                    evidence: ["alg": alg])
            }
            if name == "id_token" { idTokenClaims(f, jwt, &c) }
        }
    }

    /// The id_token's audience, issuer, nonce and key id against the rest of the session.
    func idTokenClaims(
        _ f: ExchangeFacts, _ jwt: (header: JSONValue, claims: JSONValue, raw: String),
        _ c: inout RuleContext
    ) {
        let auth = c.authorizeFor(f)
        if let clientID = f.clientID ?? auth?.value("client_id", .request) { audience(f, jwt.claims, clientID, &c) }
        issuer(f, jwt.claims, &c)
        nonce(f, jwt.claims, authorize: auth, &c)
        keyID(f, jwt.header, &c)
    }

    private func audience(_ f: ExchangeFacts, _ claims: JSONValue, _ clientID: String, _ c: inout RuleContext) {
        let aud: [String] = {
            switch claims["aud"] {
            case .string(let s)?: return [s]
            case .array(let a)?: return a.compactMap(\.string)
            default: return []
            }
        }()
        if !aud.isEmpty, !aud.contains(clientID) {
            c.add(
                id, .error, "id_token audience does not include the client_id", f,
                explanation: """
                    aud=\(aud.joined(separator: ",")) but the client is \(clientID) (OIDC Core §3.1.3.7: the \
                    client must reject it).
                    """,
                fix: """
                    Check which client the token was issued for (a token from another app, or a misconfigured \
                    audience).
                    """,
                evidence: ["aud": aud.joined(separator: ","), "client_id": clientID])
        }
    }

    private func issuer(_ f: ExchangeFacts, _ claims: JSONValue, _ c: inout RuleContext) {
        if let iss = claims["iss"]?.string, !c.discoveredIssuers.isEmpty, !c.discoveredIssuers.contains(iss) {
            c.add(
                id, .error, "id_token issuer differs from the discovered issuer", f,
                explanation: """
                    iss=\(iss), but discovery announced \(c.discoveredIssuers.sorted().joined(separator: ", ")). A \
                    trailing slash or http vs https is the usual difference.
                    """,
                fix: """
                    Make the server's configured issuer URL match its public URL exactly (behind a proxy, set the \
                    external URL / X-Forwarded-Proto).
                    """,
                evidence: ["iss": iss, "discovered": c.discoveredIssuers.sorted().joined(separator: ", ")])
        }
    }

    private func nonce(_ f: ExchangeFacts, _ claims: JSONValue, authorize auth: ExchangeFacts?, _ c: inout RuleContext)
    {
        if let sentNonce = auth?.value("nonce", .request), let nonce = claims["nonce"]?.string,
            nonce != sentNonce
        {
            c.add(
                id, .error,
                "id_token nonce differs from the one sent to /authorize", f, more: auth.map { [$0] } ?? [],
                explanation: """
                    The authorization request sent nonce=\(sentNonce); the id_token carries nonce=\(nonce). The \
                    token belongs to another authorization (replay, or overlapping sign-ins).
                    """,
                fix: "Store the nonce with the state for each authorization and compare it with the id_token's.",
                evidence: ["sent_nonce": sentNonce, "token_nonce": nonce])
        }
    }

    private func keyID(_ f: ExchangeFacts, _ header: JSONValue, _ c: inout RuleContext) {
        if let kid = header["kid"]?.string, let kids = c.jwksKids, !kids.contains(kid) {
            c.add(
                id, .error, "id_token kid \(kid) is not in the captured JWKS", f,
                explanation: """
                    The token is signed with key \(kid), but the JWKS fetched in this session lists \
                    \(kids.sorted().joined(separator: ", ")). Signature validation will fail: keys were rotated \
                    and the client cached an old JWKS, or it fetched the JWKS of another tenant.
                    """,
                fix: """
                    Re-fetch the JWKS when a kid is unknown (most libraries do with a cache TTL), and use the \
                    jwks_uri from the same issuer's discovery document.
                    """,
                evidence: ["kid": kid, "jwks_kids": kids.sorted().joined(separator: ", ")])
        }
    }
}
