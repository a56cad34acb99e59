import AuthtapModel

/// An error sent back to the callback, or an error page at /authorize.
struct AuthorizationError: Rule {
    var id: RuleID { "authorization-error" }
    var severity: Severity { .error }
    var title: String { "The authorization server refused or failed the authorization" }
    var checks: String {
        """
        access_denied (the user or a policy declined), login_required, consent_required and interaction_required \
        (warnings: a silent request needs the user), and errors no specific rule explains, at /authorize, the \
        callback or the token endpoint.
        """
    }

    static let interactiveFix =
        "Fall back to an interactive authorization request (without prompt=none) when the silent one fails."
    static let callbackFix = """
        Handle the error on the callback: show it to the user and offer to start over; check requested \
        scopes and the client's consent settings.
        """

    /// The classes no more specific rule reports.
    static let classes: Set<ErrorClass> = [.accessDenied, .interactionRequired, .other, .invalidGrant, .codeInvalid]

    func evaluate(_ c: inout RuleContext) {
        for f in c.facts {
            let front = f.roles.contains(.callback) || f.roles.contains(.authorizationResponse)
            let page = f.roles.contains(.authorizationRequest) ? AuthorizeErrorPage(f) : nil
            if front, page == nil, let report = f.error, let cls = f.errorClass, Self.classes.contains(cls),
                f.roles.contains(.callback) || !f.roles.contains(.authorizationRequest)
            {
                c.add(
                    id, Self.severity(cls), "Authorization returned \(report.code)", f,
                    explanation: "The authorization server sent the user back with \(report.summary)."
                        + Self.meaning(cls),
                    fix: cls == .interactionRequired ? Self.interactiveFix : Self.callbackFix,
                    evidence: ["error": report.code])
            } else if f.roles.contains(.token), let report = f.error, let cls = f.errorClass,
                [.accessDenied, .interactionRequired].contains(cls), !f.isRefresh
            {
                c.add(
                    id, Self.severity(cls), "The token endpoint refused: \(report.code)", f,
                    explanation: "\(f.ex.host) answered the token request with \(report.summary)." + Self.meaning(cls),
                    fix: Self.callbackFix, evidence: ["error": report.code])
            }
            if let page, f.errorClass.map(Self.classes.contains) ?? !page.namesRedirectURI {
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

    /// A silent request's answer is a warning: it is how prompt=none says "ask the user". A denial is an error:
    /// the sign-in failed, whoever decided it.
    static func severity(_ cls: ErrorClass) -> Severity {
        cls == .interactionRequired ? .warning : .error
    }

    static func meaning(_ cls: ErrorClass) -> String {
        switch cls {
        case .accessDenied: return " The user (or a policy: assignment, IP range, account state) declined."
        case .interactionRequired: return " A silent request (prompt=none) needs the user to sign in or consent."
        default: return ""
        }
    }
}
