import AuthtapModel

/// An OAuth endpoint answering with anything but the JSON object it must send.
struct NonJSONResponse: Rule {
    var id: RuleID { "non-json-response" }
    var severity: Severity { .error }
    var title: String { "An OAuth endpoint answered with something other than the JSON it must send" }
    var checks: String {
        """
        HTML (title; login page, WAF/CDN challenge, 5xx page), text/plain, form-encoded (GitHub), empty, truncated \
        or malformed JSON (parser offset), JSON with a wrong Content-Type, success without access_token/token_type \
        or with a non-numeric expires_in, an error with HTTP 200.
        """
    }

    /// How the prose names the endpoint, the first role that matches winning.
    static let endpointNames: [(role: OAuthRole, name: String)] = [
        (.token, "token endpoint"), (.userinfo, "userinfo endpoint"), (.introspection, "introspection endpoint"),
        (.deviceAuthorization, "device authorization endpoint"),
    ]
    /// Phrases of web application firewall and bot-protection pages.
    static let challengeMarkers = [
        "cf-chl", "just a moment", "attention required", "incapsula", "request unsuccessful",
        "akamai",
    ]

    static let endedEarly = """
         The response ended early: a connection cut, a Content-Length that is too long, or a gateway timeout.
        """

    func evaluate(_ c: inout RuleContext) {
        for f in c.facts { check(f, &c) }
    }

    func check(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard !f.roles.isDisjoint(with: ExchangeFacts.endpoints), let status = f.status, f.ex.error == nil else {
            return
        }
        let what = Self.endpointNames.first { f.roles.contains($0.role) }?.name ?? "PAR endpoint"
        let body = f.ex.responseBody
        let ct = f.contentType
        if f.roles.contains(.userinfo), ct.has("jwt") { return }  // signed userinfo (OIDC Core §5.3.2)
        if status == 204 || status == 304 { return }
        if body.size == 0 { return emptyBody(f, status, what, &c) }
        let first = body.bytes.first { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
        let parsed: Bool
        if case .success? = f.json { parsed = true } else { parsed = false }
        if !parsed && (ct.has("html") || first == UInt8(ascii: "<")) { return htmlPage(f, status, what, &c) }
        switch f.json {
        case .success(let value)?:
            jsonBody(f, value, status, what, &c)
        case .failure(let e)?:
            if body.truncated && e.endOfInput { return }  // authtap recorded only a prefix
            c.add(
                id, .error, e.endOfInput ? "Truncated JSON from the \(what)" : "Malformed JSON from the \(what)", f,
                explanation: "The body does not parse as JSON: \(e.message) at byte \(e.offset) of \(body.bytes.count)."
                    + (e.endOfInput ? Self.endedEarly : ""),
                fix: """
                    Look at the raw body around byte \(e.offset); fix the server's serialisation (or the proxy in \
                    front of it that rewrites bodies).
                    """,
                evidence: ["offset": String(e.offset), "parser": e.message])
        case nil:
            if ct.has("x-www-form-urlencoded") || ExchangeFacts.looksLikeForm(body.bytes) {
                let hasToken = ExchangeFacts.pairs(body.bytes).contains { $0.0 == "access_token" }
                c.add(
                    id, hasToken ? .warning : .error, "Form-encoded response from the \(what)", f,
                    explanation: """
                        The \(what) answered with a form-encoded body (\(ct.isEmpty ? "no Content-Type" : ct)). GitHub \
                        does this by default; JSON-only OAuth clients fail to parse it
                        """ + (hasToken ? ", even though it carries a token." : "."),
                    fix: "Send Accept: application/json with the token request.",
                    evidence: [
                        "content_type": ct.isEmpty ? "(none)" : ct,
                        "accept_sent": f.ex.requestHeaders.value(of: "accept") ?? "(none)",
                    ])
            } else {
                c.add(
                    id, .error, "\(ct.isEmpty ? "Untyped" : ct) response from the \(what)", f,
                    explanation: """
                        The \(what) answered HTTP \(status) with \(ct.isEmpty ? "an untyped body" : ct): \
                        \"\(String(f.bodyText.prefix(80)))\".
                        """,
                    fix: """
                        Check the endpoint URL and that the request reached the authorization server (not a gateway or \
                        health page).
                        """,
                    evidence: ["content_type": ct.isEmpty ? "(none)" : ct, "status": String(status)])
            }
        }
    }

    func emptyBody(_ f: ExchangeFacts, _ status: Int, _ what: String, _ c: inout RuleContext) {
        let ct = f.contentType
        c.add(
            id, .error, "Empty response from the \(what) (HTTP \(status))", f,
            explanation: """
                The \(what) at \(f.ex.host)\(f.path) answered HTTP \(status) with no body. OAuth clients expect a \
                JSON object and fail with a parse error (\"An invalid OAuth response was received\").
                """,
            fix: status >= 500
                ? "The server failed: check its logs."
                : """
                Check the URL (a proxy or gateway answering instead of the server), the method (POST), and the \
                Accept header.
                """,
            evidence: ["status": String(status), "content_type": ct.isEmpty ? "(none)" : ct, "body_size": "0"])
    }

    /// An HTML page: a challenge, an error page, a login page or another page, told apart by its text.
    func htmlPage(_ f: ExchangeFacts, _ status: Int, _ what: String, _ c: inout RuleContext) {
        let ct = f.contentType
        let title = f.htmlTitle
        let text = f.bodyText.lowercased()
        let kind: String
        let fix: String
        if Self.challengeMarkers.contains(where: { text.has($0) })
            || text.has("access denied") && text.has("reference #")
        {
            kind = "a WAF/CDN challenge page"
            fix = """
                The request was stopped by a web application firewall or bot protection before reaching the \
                server. Allow-list the token endpoint for server-to-server calls (no browser challenge can be \
                solved there), or call the origin directly.
                """
        } else if status >= 500 {
            kind = "a \(status) error page"
            fix = "The server or a gateway in front of it failed; retry later and check its status and logs."
        } else if text.has("type=\"password\"") || text.has("sign in") || text.has("log in") || text.has("login") {
            kind = "a login page"
            fix = """
                The request reached a page meant for a browser: the URL is the authorization endpoint or a UI \
                route instead of the token endpoint, or a session-protected gateway redirected it. Use \
                token_endpoint from the discovery document.
                """
        } else {
            kind = "an HTML page"
            fix = """
                Use the token_endpoint URL from the discovery document (a wrong base path or a missing \
                tenant/realm gives an HTML 404 page), and send Accept: application/json.
                """
        }
        c.add(
            id, .error, "HTML instead of JSON from the \(what): \(kind)", f,
            explanation: """
                The \(what) at \(f.ex.host)\(f.path) answered HTTP \(status) with \
                \(kind)\(title.map { " titled \"\($0)\"" } ?? ""). OAuth libraries try to parse it as JSON and \
                report \"An invalid OAuth response was received\".
                """,
            fix: fix,
            evidence: [
                "status": String(status), "content_type": ct.isEmpty ? "(none)" : ct,
                "title": title ?? "(none)",
            ])
    }

    /// Valid JSON: its Content-Type, an error with HTTP 200, a token response without its required members.
    func jsonBody(_ f: ExchangeFacts, _ value: JSONValue, _ status: Int, _ what: String, _ c: inout RuleContext) {
        let ct = f.contentType
        if !ct.has("json") {
            c.add(
                id, .warning, "Valid JSON served with Content-Type \(ct.isEmpty ? "(none)" : ct)", f,
                explanation: """
                    The body is valid JSON but labelled \(ct.isEmpty ? "with no Content-Type" : ct). Clients that \
                    check the type before parsing refuse it: Spring's RestTemplate/WebClient converters, .NET's \
                    ReadFromJsonAsync, and libraries that fall back to form parsing for non-JSON types (oauthlib, \
                    some Go and Java clients) then report a missing access_token; lenient ones (requests' .json(), \
                    fetch's .json(), axios) parse it anyway. Whether this breaks a sign-in depends on the client.
                    """,
                fix: "Serve OAuth responses as application/json (RFC 6749 §5.1).",
                evidence: ["content_type": ct.isEmpty ? "(none)" : ct])
        }
        if let report = f.error, status == 200, f.errorClass != .devicePending {
            c.add(
                id, .warning, "Error reported with HTTP 200", f,
                explanation: """
                    The \(what) answered HTTP 200 with \(report.summary). RFC 6749 §5.2 requires 400 (or 401); \
                    clients that check the status first treat this as a success and then fail on a missing \
                    access_token.
                    """,
                fix: report.dialect == "slack"
                    ? "Slack reports errors with ok:false in a 200: check `ok` before reading tokens."
                    : """
                    Check the body for an `error` member before reading tokens (GitHub and Slack answer errors \
                    with 200).
                    """,
                evidence: ["status": "200", "error": report.code])
        } else if f.roles.contains(.token), f.is2xx, f.error == nil, value.isObject {
            var problems: [String] = []
            if value["access_token"] == nil { problems.append("no access_token") }
            if value["token_type"] == nil { problems.append("no token_type") }
            if let e = value["expires_in"], e.number == nil {
                problems.append(
                    """
                    expires_in is \(e.string.map { "the string \"\($0)\"" } ?? e.text), not a number
                    """)
            }
            if !problems.isEmpty {
                c.add(
                    id, .error,
                    """
                    Token response is missing required members: \(problems.joined(separator: "; "))
                    """, f,
                    explanation: """
                        RFC 6749 §5.1: a successful token response has access_token and token_type, and expires_in \
                        is a number. This one has \(problems.joined(separator: "; ")).
                        """,
                    fix: """
                        Fix the server's token response, or, for a legacy server, adapt the client's parser (many \
                        libraries have a token-response hook).
                        """,
                    evidence: ["problems": problems.joined(separator: "; ")])
            }
        }
    }
}
