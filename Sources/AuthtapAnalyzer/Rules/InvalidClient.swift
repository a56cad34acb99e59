import AuthtapModel

/// Client authentication that failed, or that sent credentials twice or for another client.
struct InvalidClient: Rule {
    var id: RuleID { "invalid-client" }
    var severity: Severity { .error }
    var title: String { "Client authentication failed or is ambiguous" }
    var checks: String {
        """
        401/invalid_client (with how the client authenticated), credentials in both the Basic header and the body, \
        client_id differing between /authorize and /token; unauthorized_client or an unknown client at /authorize or \
        the callback.
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.tokenRequests { check(f, &c) }
        for f in c.reportedOutsideToken([.invalidClient]) {
            c.addReported(
                id, .error, "The server does not accept this client", f,
                meaning: """
                    The client_id is unknown, disabled, or not allowed this flow (response type, grant or audience) \
                    in the server's registration.
                    """,
                fix: """
                    Check client_id against the registration for this environment and tenant, and the flows and \
                    audiences the client is allowed.
                    """)
        }
    }

    func check(_ f: ExchangeFacts, _ c: inout RuleContext) {
        let auth = ClientAuthentication(f)
        if auth.basic && (auth.bodySecret || auth.assertion) { sentTwice(f, bodySecret: auth.bodySecret, &c) }
        if f.errorClass == .invalidClient || (f.status == 401 && (f.errorClass ?? .other) == .other) {
            rejected(f, auth, &c)
        }
        if let authorize = c.authorizeFor(f), let a = authorize.value("client_id", .request), let t = f.clientID,
            a != t
        {
            clientChanged(f, authorize: authorize, a, t, &c)
        }
    }

    /// How the token request authenticated the client.
    struct ClientAuthentication {
        let basic: Bool
        let bodySecret: Bool
        let assertion: Bool

        init(_ f: ExchangeFacts) {
            basic = f.param("client_id", .requestHeaderAuthorization) != nil
            bodySecret = f.param("client_secret", .requestBody) != nil
            assertion = f.param("client_assertion", .requestBody) != nil
        }

        var isNone: Bool { !basic && !bodySecret && !assertion }

        var method: String {
            if basic { return "client_secret_basic" }
            if bodySecret { return "client_secret_post" }
            if assertion { return "private_key_jwt / client_secret_jwt" }
            return "none (public client)"
        }
    }

    private func sentTwice(_ f: ExchangeFacts, bodySecret: Bool, _ c: inout RuleContext) {
        c.add(
            id, f.is2xx ? .warning : .error,
            "Client credentials sent both in the Basic header and in the body", f,
            explanation: """
                RFC 6749 §2.3: a client must not use more than one authentication method in a request. This one \
                sends HTTP Basic credentials and \(bodySecret ? "client_secret" : "client_assertion") in the body; \
                servers may reject it with invalid_request or invalid_client, or pick either.
                """,
            fix: """
                Send the credentials once: either the Authorization: Basic header (client_secret_basic) or the \
                body (client_secret_post), whichever the client is registered for.
                """,
            evidence: ["method": "client_secret_basic + body"])
    }

    private func rejected(_ f: ExchangeFacts, _ auth: ClientAuthentication, _ c: inout RuleContext) {
        let hasPKCE = f.param("code_verifier", .request) != nil
        var explanation = """
            \(f.ex.host) rejected the client's authentication (\(f.error?.summary ?? "HTTP \(f.status ?? 0)")). \
            The client authenticated with \(auth.method).
            """
        if hasPKCE && (auth.basic || auth.bodySecret) {
            explanation += """
                 It also uses PKCE: if the client is registered as public (SPA, mobile, CLI), it has no secret and \
                must not send one.
                """
        }
        if auth.isNone {
            explanation += """
                 No credentials were sent: a confidential client must authenticate at the token endpoint.
                """
        }
        c.add(
            id, .error, "Client authentication failed", f,
            explanation: explanation,
            fix: """
                Check client_id and the secret for this environment (a rotated or expired secret, a secret from \
                another tenant), and the authentication method the client is registered with (client_secret_basic \
                vs client_secret_post vs none). In Basic, the id and secret must each be form-urlencoded before \
                base64 (RFC 6749 §2.3.1).
                """,
            evidence: ["method": auth.method, "client_id": f.clientID ?? "(none)"],
            candidates: Elimination.client(f, c).candidates)
    }

    private func clientChanged(
        _ f: ExchangeFacts, authorize auth: ExchangeFacts, _ a: String, _ t: String, _ c: inout RuleContext
    ) {
        c.add(
            id, .error, "client_id differs between /authorize and /token", f, more: [auth],
            explanation: """
                The authorization request #\(auth.id) used client_id=\(a), the token request uses client_id=\(t). \
                A code is bound to the client it was issued to.
                """,
            fix: "Use one client registration for both legs (check environment variables for dev vs prod IDs).",
            evidence: ["authorize_client_id": a, "token_client_id": t])
    }
}
