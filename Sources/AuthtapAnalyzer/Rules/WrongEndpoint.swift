import AuthtapModel

/// A request sent to an endpoint, tenant or realm that is not the client's: an unknown tenant, a realm that does
/// not exist, a retired URL, or a token endpoint that redirects.
struct WrongEndpoint: Rule {
    var id: RuleID { "wrong-endpoint" }
    var severity: Severity { .error }
    var title: String { "The request went to the wrong endpoint, tenant or realm" }
    var checks: String {
        """
        A server that says the tenant, realm or authorization server is unknown, or that the URL is retired \
        (Entra AADSTS90002, Figma's retired URL); a token endpoint answering with a redirect.
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.facts where !f.roles.isEmpty {
            if f.errorClass == .wrongEndpoint, let report = f.error {
                c.add(
                    id, .error, "\(f.ex.host) does not know this tenant, realm or endpoint", f,
                    explanation: """
                        \(f.ex.host)\(f.path) answered \(report.summary). The URL's tenant, realm or path does not \
                        name one the server serves: a placeholder left in the configuration, a typo, another \
                        environment, or an endpoint the provider retired.
                        """,
                    fix: """
                        Take the endpoints from the issuer's discovery document (.well-known/openid-configuration) \
                        and check the tenant or realm in the issuer URL.
                        """,
                    evidence: ["url": "\(f.ex.host)\(f.path)"])
            } else if f.roles.contains(.token), f.method == "POST", let status = f.status, (300..<400).contains(status)
            {
                let location = f.ex.responseHeaders.value(of: "location") ?? "(none)"
                c.add(
                    id, .error, "The token endpoint answered with a redirect (HTTP \(status))", f,
                    explanation: """
                        \(f.ex.host)\(f.path) redirected the token request to \(location). Clients do not follow a \
                        redirect for a POST with its body (or turn it into a GET), so no token comes back: the URL \
                        moved, or is not the token endpoint.
                        """,
                    fix: "Use the token_endpoint from the discovery document, with the scheme and host it names.",
                    evidence: ["location": location, "status": String(status)])
            }
        }
    }
}
