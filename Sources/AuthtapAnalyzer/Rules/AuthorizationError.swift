import AuthtapModel

/// An error sent back to the callback, or an error page at /authorize.
struct AuthorizationError: Rule {
    var id: RuleID { "authorization-error" }
    var severity: Severity { .warning }
    var title: String { "The authorization server returned an error to the callback" }
    var checks: String {
        "access_denied, login_required, consent_required and other errors at /authorize or the callback."
    }

    static let interactiveFix =
        "Fall back to an interactive authorization request (without prompt=none) when the silent one fails."
    static let callbackFix = """
        Handle the error on the callback: show it to the user and offer to start over; check requested \
        scopes and the client's consent settings.
        """

    func evaluate(_ c: inout RuleContext) {
        for f in c.facts {
            if f.roles.contains(.callback) || f.roles.contains(.authorizationResponse),
                let report = f.error, f.errorClass != nil, f.errorClass != .redirectURIMismatch,
                f.roles.contains(.callback) || !f.roles.contains(.authorizationRequest)
            {
                c.add(
                    id, f.errorClass == .accessDenied || f.errorClass == .interactionRequired ? .warning : .error,
                    "Authorization returned \(report.code)", f,
                    explanation: "The authorization server sent the user back with \(report.summary)."
                        + (f.errorClass == .accessDenied
                            ? " The user (or a policy) declined consent."
                            : f.errorClass == .interactionRequired
                                ? " A silent request (prompt=none) needs the user to sign in or consent." : ""),
                    fix: f.errorClass == .interactionRequired ? Self.interactiveFix : Self.callbackFix,
                    evidence: ["error": report.code])
            }
            if f.roles.contains(.authorizationRequest), let page = AuthorizeErrorPage(f), !page.namesRedirectURI {
                let (status, shown) = (page.status, page.shown)
                c.add(
                    id, .error, "The authorization request was rejected with HTTP \(status)", f,
                    explanation: """
                        \(f.ex.host) answered the authorization request with an error page (\(shown)) instead of \
                        redirecting back to the client.
                        """,
                    fix: """
                        Check client_id, response_type and scope against the client's registration; the error page \
                        names the parameter.
                        """,
                    evidence: ["status": String(status), "server_says": shown])
            }
        }
    }
}
