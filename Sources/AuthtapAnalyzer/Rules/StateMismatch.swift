import AuthtapModel

/// A callback whose state does not answer its authorization request; a request with no CSRF defence.
struct StateMismatch: Rule {
    var id: RuleID { "state-mismatch" }
    var severity: Severity { .error }
    var title: String { "The callback's state does not match /authorize" }
    var checks: String {
        """
        Callback state differs from the one sent, is missing, or was never issued; the client framework's own state \
        error at its callback (mismatching_state, a missing state cookie, Correlation failed); warns on an \
        authorization request with neither state nor PKCE.
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.facts {
            if f.roles.contains(.callback) { callback(f, &c) }
            if f.roles.contains(.authorizationRequest) {
                let state = f.value("state", .request)
                let challenge = f.value("code_challenge", .request)
                if state == nil && challenge == nil, f.value("response_type", .request)?.has("code") ?? false {
                    c.add(
                        id, .warning, "Authorization request without state or PKCE: no CSRF protection", f,
                        explanation: """
                            The authorization request to \(f.ex.host)\(f.path) carries neither state nor a PKCE \
                            code_challenge. Nothing ties the callback to this browser session, so an attacker can inject \
                            their own code (login CSRF, RFC 6749 §10.12).
                            """,
                        fix: """
                            Send an unguessable state bound to the user's session and check it on the callback, and use \
                            PKCE (S256) as OAuth 2.1 requires for every client.
                            """,
                        evidence: ["client_id": f.value("client_id", .request) ?? "(none)"])
                }
            }
        }
    }

    /// The client application's own error at its callback: a framework that lost or did not match the state.
    func complaint(_ f: ExchangeFacts, _ c: inout RuleContext) -> Bool {
        guard let report = f.callbackComplaint, ProviderErrors.classify(report, leg: .front).0 == .stateMismatch
        else { return false }
        let said = report.description.map { String($0.prefix(200)) } ?? report.code
        let seen = StateEvidence(callback: f, c)
        let why =
            seen.isEmpty
            ? """
            The state it stored when the sign-in started was missing or different when the callback arrived: the \
            state cookie or session did not come back (SameSite on a cross-site form_post, a cookie path or domain \
            that does not cover the callback, a different host name), or a second sign-in (another tab, a double \
            click) replaced it.
            """ : "The capture shows why: \(seen.sentence)."
        c.add(
            id, .error, "The client application rejected the callback's state", f,
            more: [seen.overtakenBy, seen.answered].compactMap { $0 },
            explanation: """
                The callback page answered HTTP \(f.status.map(String.init) ?? "?") with the client framework's own \
                state error: "\(said)". \(why)
                """,
            fix: """
                Keep the state where the callback can read it: a cookie with SameSite=Lax (None; Secure for \
                response_mode=form_post), a path and domain that cover the callback URL, and the same host name on \
                both legs; start one sign-in per browser session, or key stored states by their value.
                """,
            evidence: seen.evidence.merging(
                ["app_says": said, "callback_status": f.status.map(String.init) ?? "(none)"],
                uniquingKeysWith: { a, _ in a }))
        return true
    }

    /// A callback whose state answers an earlier sign-in than the latest, or whose state cookie did not come back,
    /// while the client did not say so itself.
    func overtaken(_ f: ExchangeFacts, _ c: inout RuleContext) -> Bool {
        let seen = StateEvidence(callback: f, c)
        guard !seen.isEmpty else { return false }
        // A cookie alone is evidence only for a callback that failed: a healthy sign-in may set cookies it never
        // needs back.
        if seen.overtakenBy == nil, (f.status ?? 0) < 400 { return false }
        // The callback failed, or its code never reached the token endpoint: the client gave up on it.
        let unredeemed = f.fingerprint("code", .request).map { (c.codeRedeemed[$0] ?? []).isEmpty } ?? false
        let failed = (f.status ?? 0) >= 400 || unredeemed
        let unfinished = unredeemed ? "its code was never exchanged" : "the callback answered HTTP \(f.status ?? 0)"
        let outcome =
            failed
            ? "The client did not finish this sign-in: \(unfinished)."
            : "Clients that keep one state per session reject it."
        let title =
            seen.overtakenBy != nil
            ? "A second sign-in started before this callback came back"
            : "The state cookie did not come back to the callback"
        c.add(
            id, failed ? .error : .warning, title, f, more: [seen.overtakenBy, seen.answered].compactMap { $0 },
            explanation: """
                The callback carries state=\(f.value("state", .request) ?? "?"), but \(seen.sentence). \
                \(outcome)
                """,
            fix: """
                Key stored states by their value (one entry per sign-in in flight) or start one sign-in per browser \
                session; keep the state cookie SameSite=Lax (None; Secure for response_mode=form_post, a cross-site \
                POST), with a path and domain that cover the callback.
                """,
            evidence: seen.evidence)
        return true
    }

    /// The callback's state against the one its authorization request sent.
    func callback(_ f: ExchangeFacts, _ c: inout RuleContext) {
        if complaint(f, &c) || overtaken(f, &c) { return }
        let callbackState = f.value("state", .request)
        let code = f.fingerprint("code", .request)
        // The authorization request this callback answers: via the code's authorization response, or the transaction.
        let issuer = code.flatMap { c.codeIssued[$0]?.first { $0.roles.contains(.authorizationResponse) } }
        let auth =
            issuer.flatMap { i in i.roles.contains(.authorizationRequest) ? i : nil }
            ?? c.transaction(of: f).flatMap { c.authorizeByTransaction[$0]?.last { $0.id < f.id } }
        let sentState = auth?.value("state", .request)
        if let auth, let sentState {
            if callbackState == nil {
                c.add(
                    id, .error, "Callback arrived without the state sent to /authorize", f, more: [auth],
                    explanation: """
                        The authorization request #\(auth.id) sent state=\(sentState), but the callback carries no \
                        state. The client cannot tell this callback from a forged one.
                        """,
                    fix: """
                        Check that the redirect preserves the query (no rewrite or proxy dropping it) and that the \
                        client reads state from the right place (query vs fragment vs form_post body).
                        """,
                    evidence: ["sent_state": sentState, "callback_state": "(missing)"])
            } else if let callbackState, callbackState != sentState {
                c.add(
                    id, .error, "Callback state differs from the one sent to /authorize", f, more: [auth],
                    explanation: """
                        The authorization request #\(auth.id) sent state=\(sentState); the callback #\(f.id) returned \
                        state=\(callbackState). Either two sign-ins overlapped (two tabs, a double click), the state \
                        was stored in a session that changed (cookie lost on a cross-site redirect: SameSite=Strict), \
                        or the callback was forged.
                        """,
                    fix: """
                        Store state where the callback can read it (a cookie with SameSite=Lax and the right \
                        domain/path, or server session), generate it once per sign-in, and reject the callback on \
                        mismatch rather than continuing.
                        """,
                    evidence: ["sent_state": sentState, "callback_state": callbackState])
            }
        } else if let callbackState, auth == nil, !c.authorizeStates.isEmpty,
            !c.authorizeStates.contains(callbackState)
        {
            c.add(
                id, .warning, "Callback state was never issued in this capture", f,
                explanation: """
                    The callback carries state=\(callbackState), but none of the \(c.authorizeStates.count) \
                    authorization requests captured in this session sent it.
                    """,
                fix: """
                    If the authorization request went through another path (a browser not using the proxy), import its \
                    HAR; otherwise the callback did not originate from this client and must be rejected.
                    """,
                evidence: ["callback_state": callbackState])
        }
    }
}
