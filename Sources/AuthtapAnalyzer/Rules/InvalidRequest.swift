import AuthtapModel

/// A token request that is malformed: sent with GET, not form-encoded, or missing parameters.
struct InvalidRequest: Rule {
    var id: RuleID { "invalid-request" }
    var severity: Severity { .error }
    var title: String { "The token request is malformed" }
    var checks: String {
        """
        Body not application/x-www-form-urlencoded (JSON is a common mistake), a GET to the token endpoint, \
        mandatory parameters missing for the grant type, invalid_request errors.
        """
    }

    func evaluate(_ c: inout RuleContext) {
        elsewhere(&c)
        for f in c.facts where f.roles.contains(.token) {
            if f.method == "GET" {
                c.add(
                    id, .error, "GET sent to the token endpoint", f,
                    explanation: """
                        The token request at \(f.ex.host)\(f.path) used GET with its parameters in the query. RFC \
                        6749 §3.2 requires POST, and parameters in a URL leak into logs and browser history.
                        """,
                    fix: "Send the token request as POST with an application/x-www-form-urlencoded body.",
                    evidence: ["method": "GET", "grant_type": f.grantType ?? ""])
            } else {
                shape(f, &c)
                if f.errorClass == .invalidRequest, let report = f.error {
                    c.add(
                        id, .error, "The server says the token request is malformed", f,
                        explanation: """
                            \(f.ex.host) answered \(report.summary). The request carried: \
                            \(f.ex.oauthParams.filter { $0.location.isRequest }.map(\.name).joined(separator: ", ")).
                            """,
                        fix: """
                            Compare the parameters with what the grant type requires (RFC 6749 §4), send them once \
                            each, form-encoded.
                            """,
                        evidence: [:], candidates: Elimination.request(f).candidates)
                }
            }
        }
    }

    /// The server's invalid_request at the callback, at /authorize or at another endpoint.
    func elsewhere(_ c: inout RuleContext) {
        for f in c.reportedOutsideToken([.invalidRequest]) {
            c.addReported(
                id, .error, "The server says the request is malformed", f,
                meaning: "A parameter is missing, repeated or has a value the server refuses.",
                fix: "Read the description for the parameter it names, and compare the request with the spec.")
        }
    }

    /// The body's encoding and the parameters the grant type requires.
    func shape(_ f: ExchangeFacts, _ c: inout RuleContext) {
        let contentType = (f.ex.requestHeaders.value(of: "content-type") ?? "").lowercased()
        if !contentType.has("application/x-www-form-urlencoded") {
            c.add(
                id, f.is2xx && f.error == nil ? .warning : .error,
                """
                Token request body is \(contentType.isEmpty ? "untyped" : contentType), not form-encoded
                """, f,
                explanation: """
                    RFC 6749 §4.1.3 and §3.2: token requests are application/x-www-form-urlencoded. This one was sent \
                    as \(contentType.isEmpty ? "a body without Content-Type" : contentType); most servers ignore such \
                    a body and then report missing parameters.
                    """,
                fix: """
                    Encode the parameters as a form: in fetch, body: new URLSearchParams({...}); in axios, pass a \
                    URLSearchParams (not an object); in requests, data= (not json=).
                    """,
                evidence: ["content_type": contentType.isEmpty ? "(none)" : contentType])
        }
        let required: [String: [String]] = [
            "authorization_code": ["code"], "refresh_token": ["refresh_token"], "password": ["username", "password"],
            "urn:ietf:params:oauth:grant-type:device_code": ["device_code"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer": ["assertion"],
            "urn:ietf:params:oauth:grant-type:token-exchange": ["subject_token", "subject_token_type"],
        ]
        if let grant = f.grantType, let names = required[grant] {
            let missing = names.filter { f.param($0, .request) == nil }
            if !missing.isEmpty {
                c.add(
                    id, .error, "Token request for \(grant) is missing \(missing.joined(separator: ", "))", f,
                    explanation: """
                        grant_type=\(grant) requires \(names.joined(separator: ", ")); this request lacks \
                        \(missing.joined(separator: ", ")).
                        """,
                    fix: "Add \(missing.joined(separator: ", ")) to the token request body.",
                    evidence: ["grant_type": grant, "missing": missing.joined(separator: ", ")])
            }
        }
    }
}
