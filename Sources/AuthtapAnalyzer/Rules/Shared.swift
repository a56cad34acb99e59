import AuthtapModel

/// How to make a client trust the authtap CA: the one text the tls-fault and missing-leg fixes share.
enum TrustCA {
    /// The command that points the common TLS stacks at the CA.
    static let env = #"eval "$(authtap env)""#
    /// The environment variables `authtap env` sets.
    static let names = ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"]
    static let pinning = "Certificate pinning clients cannot be intercepted: exclude them with --intercept."

    /// The variable names as a list, the last one joined with `last` ("and") or a plain comma.
    static func variables(last: String?) -> String {
        guard let last, let final = names.last else { return names.joined(separator: ", ") }
        return names.dropLast().joined(separator: ", ") + " \(last) " + final
    }

    /// The keytool command that adds the CA to Java's trust store.
    static func java(_ caPath: String) -> String { "keytool -importcert -alias authtap -file \(caPath) -cacerts" }
}

/// An error page (not a redirect) answering an authorization request: the server would not even send the user
/// back. redirect-uri-mismatch reports it when the page names the redirect URI, authorization-error otherwise.
struct AuthorizeErrorPage {
    let status: Int
    /// The server's error, else the page's title, else the status.
    let shown: String
    let redirect: String
    let namesRedirectURI: Bool

    init?(_ f: ExchangeFacts) {
        guard let status = f.status, status >= 400 || (f.error != nil && !(300..<400).contains(status)) else {
            return nil
        }
        var report: ErrorReport? = nil
        if case .success(let json) = JSONValue.parse(f.ex.responseBody.bytes) {
            report = ProviderErrors.report(json: json)
        }
        let text = (report.map { "\($0.code) \($0.description ?? "")" } ?? f.bodyText).lowercased()
        self.status = status
        self.shown = report?.summary ?? f.htmlTitle ?? "HTTP \(status)"
        self.redirect = f.value("redirect_uri", .request) ?? "(none)"
        self.namesRedirectURI = ["redirect_uri", "redirect uri", "redirect url", "callback url"]
            .contains { text.has($0) }
    }
}

extension RuleContext {
    /// Exchanges outside the token endpoint where the server reported an error of one of `classes`: the
    /// callback, the authorization response, an error page at /authorize, the other endpoints.
    func reportedOutsideToken(_ classes: Set<ErrorClass>) -> [ExchangeFacts] {
        let found = facts.filter { f in
            guard f.error != nil, let cls = f.errorClass, classes.contains(cls) else { return false }
            return !f.roles.contains(.token) && !f.roles.isEmpty
        }
        // The redirect and the callback it leads to carry one error: report it once, at the callback.
        let atCallback = Set(
            found.filter { $0.roles.contains(.callback) }.map {
                "\($0.error?.code ?? "")|\($0.value("state", .request) ?? "")"
            })
        return found.filter { f in
            guard f.roles.contains(.authorizationResponse), !f.roles.contains(.callback) else { return true }
            let key = "\(f.error?.code ?? "")|\(f.value("state", .responseLocation) ?? "")"
            return !atCallback.contains(key)
        }
    }

    /// Where an error outside the token endpoint was shown, as the prose says it.
    static func place(_ f: ExchangeFacts) -> String {
        if f.roles.contains(.callback) { return "sent the user back to the callback with" }
        if f.roles.contains(.authorizationResponse) {
            return "answered the authorization request with a redirect carrying"
        }
        if f.roles.contains(.authorizationRequest) { return "answered the authorization request with an error page:" }
        return "answered \(f.path) with"
    }

    /// A finding for the server's own error outside the token endpoint.
    mutating func addReported(
        _ rule: RuleID, _ severity: Severity, _ title: String, _ f: ExchangeFacts, meaning: String, fix: String
    ) {
        guard let report = f.error else { return }
        add(
            rule, severity, title, f,
            explanation: "\(f.ex.host) \(Self.place(f)) \(report.summary). \(meaning)",
            fix: fix, evidence: ["error": report.code])
    }
}
