import AuthtapModel

/// The steps of a sign-in that happen at the authorization server between the authorization request and the
/// redirect back (the login form POST, a consent POST, an MFA or OTP step), recognised by what ties them to the
/// authorization request: a return parameter that embeds it, a Referer that is it (or embeds it), or the
/// server's own handle for the sign-in (Hydra's challenges).
public enum SignInStep {
    /// A parameter in which a login page carries where to go back once the user has signed in; when its value
    /// is an authorization request, the exchange is a step of that sign-in. Matched without case.
    public static let returnParameters: [(name: String, source: String)] = [
        // django.contrib.auth's REDIRECT_FIELD_NAME, which django-oauth-toolkit's login redirect uses: the browser
        // test's capture (Tests/integration/test_browser.py) posts next=/o/authorize/?client_id=…&state=…
        ("next", "django/contrib/auth/views.py redirect_to_login; Tests/integration/test_browser.py FLOW"),
        // ASP.NET Core Identity's and Duende IdentityServer's default LoginReturnUrlParameter.
        (
            "ReturnUrl",
            """
            https://github.com/skoruba/IdentityServer4.Admin/issues/520 \
            (/Account/Login?ReturnUrl=%2Fconnect%2Fauthorize%2Fcallback%3Fresponse_type…client_id…state…); \
            https://github.com/DuendeArchive/IdentityServer4/issues/3948
            """
        ),
        // IdentityServer's option renamed by the user (LoginReturnUrlParameter = "continue"; the page showed
        // `returnUrl=`), and Google's sign-in pages, which carry the next URL in `continue`.
        ("continue", "https://github.com/DuendeArchive/identity-model-oidc-client-js/issues/257"),
        (
            "continue",
            """
            https://github.com/privacysandbox/privacy-sandbox-dev-support/issues/392 \
            (accounts.google.com/v3/signin/identifier?continue=…)
            """
        ),
        // Doorkeeper (Rails) leaves the login redirect to the application; this is the parameter a maintainer's
        // answer passes the /oauth/authorize path in.
        ("after_login_path", "https://github.com/doorkeeper-gem/doorkeeper/issues/955"),
        // Rails and Devise keep the authorize path in `session[:user_return_to]` / `return_to`; apps that put it in
        // the URL use the same name.
        ("return_to", "https://github.com/thoughtbot/upcase/pull/848 (session[:return_to] = the authorize path)"),
        ("user_return_to", "https://github.com/doorkeeper-gem/doorkeeper/issues/757"),
    ]

    /// Ory Hydra's handles for one sign-in: appended to the login and consent apps' URLs by the redirect that
    /// answers the authorization request, then posted back by those apps.
    public static let challengeParameters: [(name: String, source: String)] = [
        (
            "login_challenge",
            "https://docs.rs/open-api-hydra/latest/open_api_hydra/apis/admin_api/fn.get_login_request.html"
        ),
        (
            "consent_challenge",
            "https://docs.rs/open-api-hydra/latest/open_api_hydra/apis/admin_api/fn.get_consent_request.html"
        ),
    ]

    static let returnNames = Set(returnParameters.map { $0.name.lowercased() })
    public static let challengeNames = Set(challengeParameters.map(\.name))

    /// The parameters of the authorization request a sign-in step carries (client_id, state, redirect_uri,
    /// response_type…), each located under the parameter or header that carried it
    /// (`request.body.next`, `request.header.referer.query`); empty when it carries none. Read from the
    /// exchange's recorded parameters, so it works on stored and imported captures alike.
    public static func embeddedRequest(in params: [OAuthParam]) -> [OAuthParam] {
        // A return parameter whose value is an authorization request (the login form's `next`, in its query,
        // its body, or the query of the login page it was posted from).
        for p in params
        where p.location.isRequest && p.fingerprint == nil
            && returnNames.contains(p.name.lowercased())
        {
            let inner = pairs(ofURL: p.value)
            if isAuthorizationRequest(inner) {
                let location = ParamLocation(rawValue: p.location.rawValue + "." + p.name)
                return inner.map { OAuthParam(location: location, name: $0.name, value: $0.value) }
            }
        }
        // A Referer that is the authorization request itself: a consent form, or a login form rendered at the
        // authorize URL (Keycloak), posts back from it.
        let referer = params.filter { $0.location.isWithin(.requestHeaderRefererQuery) }
        if isAuthorizationRequest(referer.map { ($0.name, $0.value) }) { return referer }
        return []
    }

    /// Hydra's challenge a request carries, if any.
    public static func challenge(in params: [OAuthParam]) -> OAuthParam? {
        params.first { $0.location.isRequest && challengeNames.contains($0.name) && !$0.value.isEmpty }
    }

    /// client_id with response_type or redirect_uri: what `Recognizer` takes for an authorization request.
    static func isAuthorizationRequest(_ pairs: [(name: String, value: String)]) -> Bool {
        pairs.contains { $0.name == "client_id" && !$0.value.isEmpty }
            && pairs.contains { $0.name == "response_type" || $0.name == "redirect_uri" }
            && !pairs.contains { $0.name == "grant_type" }
    }

    /// The query pairs of a URL or path, decoded; none when it has no query.
    static func pairs(ofURL url: String) -> [(name: String, value: String)] {
        guard let q = url.firstIndex(of: "?") else { return [] }
        let query = url[url.index(after: q)...].prefix { $0 != "#" }
        return query.split(separator: "&").compactMap { pair -> (name: String, value: String)? in
            guard let eq = pair.firstIndex(of: "=") else { return nil }
            let value = pair[pair.index(after: eq)...]
            return (FormCoding.decode(String(pair[..<eq])), FormCoding.decode(String(value)))
        }
    }
}

extension Recognizer {
    /// A step of a sign-in at the authorization server: a submission (not a page or asset load) that no other role
    /// explains and that carries the authorization request it belongs to, or Hydra's challenge for it.
    static func isSignInStep(_ f: Facts, after roles: [OAuthRole]) -> Bool {
        let method = f.method.uppercased()
        guard roles.isEmpty, method != "GET", method != "HEAD", method != "OPTIONS" else { return false }
        return SignInStep.challenge(in: f.params) != nil || !SignInStep.embeddedRequest(in: f.params).isEmpty
    }
}
