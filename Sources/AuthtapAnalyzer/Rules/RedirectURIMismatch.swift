import AuthtapModel
import Foundation

/// A redirect_uri that differs between /authorize and /token, or that the server refused.
struct RedirectURIMismatch: Rule {
    var id: RuleID { "redirect-uri-mismatch" }
    var severity: Severity { .error }
    var title: String { "redirect_uri differs between /authorize and /token" }
    var checks: String {
        """
        Exact difference (trailing slash, scheme, host, port, path case, query), or the server's redirect_uri \
        error at /token or /authorize.
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.facts {
            if f.roles.contains(.token), f.method != "GET" { tokenRequest(f, &c) }
            if f.roles.contains(.callback) || f.roles.contains(.authorizationResponse),
                let report = f.error, f.errorClass == .redirectURIMismatch
            {
                c.add(
                    id, .error, "The server rejected the redirect_uri at /authorize", f,
                    explanation: """
                        \(f.ex.host) answered the authorization request with \(report.summary). The redirect_uri \
                        sent must match one registered for the client exactly, character for character.
                        """,
                    fix: """
                        Register \(c.authorizeFor(f)?.value("redirect_uri", .request) ?? "the redirect_uri") for \
                        this client, or send the one that is registered (watch scheme, host, port, trailing slash \
                        and case).
                        """,
                    evidence: ["redirect_uri": f.value("redirect_uri", .request) ?? "(not in this exchange)"])
            }
            if f.roles.contains(.authorizationRequest), let page = AuthorizeErrorPage(f),
                f.errorClass == .redirectURIMismatch || (page.namesRedirectURI && f.errorClass == nil)
            {
                let (status, shown, redirect) = (page.status, page.shown, page.redirect)
                c.add(
                    id, .error, "The server rejected the redirect_uri at /authorize", f,
                    explanation: """
                        \(f.ex.host) answered the authorization request with an error page (\(shown)) instead of \
                        redirecting: it does not accept redirect_uri=\(redirect) for client \
                        \(f.value("client_id", .request) ?? "?"). The user never gets back to the app.
                        """,
                    fix: """
                        Register exactly \(redirect) for this client (scheme, host, port, path and trailing slash must \
                        match), or send the registered one.
                        """,
                    evidence: ["redirect_uri": redirect, "status": String(status), "server_says": shown])
            }
        }
    }

    /// The redirect_uri at /token against the one at /authorize.
    func tokenRequest(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard f.isCodeGrant else { return }
        let auth = c.authorizeFor(f)
        let sent = auth?.value("redirect_uri", .request)
        let token = f.value("redirect_uri", .request)
        let serverSays = f.errorClass == .redirectURIMismatch
        let authID = auth.map { "\($0.id)" } ?? "?"
        if let sent, let token, sent != token {
            let how = Self.describeDifference(sent, token)
            // A difference the server accepted (e.g. case in the query) is not a failure.
            if f.tokenSucceeded { return }
            c.add(
                id, .error,
                "redirect_uri differs between /authorize and /token: \(how)", f, more: auth.map { [$0] } ?? [],
                explanation: """
                    RFC 6749 §4.1.3: the redirect_uri sent to /token must be identical to the one sent to /authorize \
                    (#\(authID)). They differ in \(how).
                    """,
                fix: """
                    Use one constant for the redirect_uri in both requests (build it from configuration, not from the \
                    incoming request's Host header, which a proxy or load balancer may change).
                    """,
                evidence: ["authorize_redirect_uri": sent, "token_redirect_uri": token, "difference": how])
        } else if let sent, token == nil, !f.tokenSucceeded {
            c.add(
                id, .error, "redirect_uri missing from the token request", f, more: auth.map { [$0] } ?? [],
                explanation: """
                    The authorization request sent redirect_uri=\(sent), so RFC 6749 §4.1.3 requires the same value in \
                    the token request, which has none.
                    """,
                fix: "Add redirect_uri=\(sent) to the token request.",
                evidence: ["authorize_redirect_uri": sent])
        } else if serverSays {
            c.add(
                id, .error, "The server rejected the redirect_uri", f,
                explanation: "\(f.ex.host) answered \(f.error?.summary ?? "an error")."
                    + (auth == nil
                        ? """
                         The authorization request was not captured; compare the token request's redirect_uri \
                        (\(token ?? "none")) with the one registered and the one used at /authorize.
                        """ : ""),
                fix: "Send exactly the registered redirect_uri in both requests.",
                evidence: ["token_redirect_uri": token ?? "(none)"])
        }
    }

    /// Which parts of two URLs differ, in words.
    static func describeDifference(_ a: String, _ b: String) -> String {
        guard let ua = URLComponents(string: a), let ub = URLComponents(string: b) else { return "their text" }
        var parts: [String] = []
        if ua.scheme?.lowercased() != ub.scheme?.lowercased() {
            parts.append("scheme (\(ua.scheme ?? "none") vs \(ub.scheme ?? "none"))")
        }
        if ua.host != ub.host {
            parts.append(
                ua.host?.lowercased() == ub.host?.lowercased()
                    ? "host case (\(ua.host ?? "") vs \(ub.host ?? ""))"
                    : "host (\(ua.host ?? "none") vs \(ub.host ?? "none"))")
        }
        if ua.port != ub.port {
            parts.append("port (\(ua.port.map(String.init) ?? "default") vs \(ub.port.map(String.init) ?? "default"))")
        }
        if ua.path != ub.path {
            if ua.path + "/" == ub.path || ub.path + "/" == ua.path {
                parts.append("a trailing slash (\(ua.path) vs \(ub.path))")
            } else if ua.path.lowercased() == ub.path.lowercased() {
                parts.append("path case (\(ua.path) vs \(ub.path))")
            } else {
                parts.append("path (\(ua.path) vs \(ub.path))")
            }
        }
        if ua.percentEncodedQuery != ub.percentEncodedQuery {
            parts.append("query (\(ua.percentEncodedQuery ?? "none") vs \(ub.percentEncodedQuery ?? "none"))")
        }
        if ua.fragment != ub.fragment { parts.append("fragment") }
        return parts.isEmpty ? "encoding only" : parts.joined(separator: ", ")
    }
}
