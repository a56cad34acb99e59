import AuthtapModel

/// A grant type the server refuses.
struct UnsupportedGrantType: Rule {
    var id: RuleID { "unsupported-grant-type" }
    var severity: Severity { .error }
    var title: String { "The server does not support the grant type sent" }
    var checks: String {
        """
        unsupported_grant_type errors, with the grant_type that was sent; a response_type or grant not enabled for \
        the client at /authorize.
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.tokenRequests {
            guard f.errorClass == .unsupportedGrantType, let report = f.error else { continue }
            c.add(
                id, .error, "Grant type \(f.grantType ?? "(none)") not supported by \(f.ex.host)", f,
                explanation: """
                    The token endpoint answered \(report.summary) to grant_type=\(f.grantType ?? "(missing)"). Either \
                    the server does not implement this grant, or this client is not allowed to use it.
                    """,
                fix: """
                    Enable the grant type for this client in the authorization server (e.g. 'Authorization Code', \
                    'Refresh Token', 'Client Credentials', 'Device Code'), and check the exact spelling: extension \
                    grants are URNs like urn:ietf:params:oauth:grant-type:device_code.
                    """,
                evidence: ["grant_type": f.grantType ?? "(missing)"])
        }
        for f in c.reportedOutsideToken([.unsupportedGrantType]) {
            c.addReported(
                id, .error, "The server does not allow this flow for the client", f,
                meaning: """
                    The response_type or grant is not enabled for this client (or not implemented by the server).
                    """,
                fix: """
                    Enable the flow for this client in the authorization server (e.g. 'Authorization Code'), or send \
                    the response_type it is registered for.
                    """)
        }
    }
}
