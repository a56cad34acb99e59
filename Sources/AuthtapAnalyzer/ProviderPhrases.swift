/// Provider knowledge as data, the phrases (the codes are in `ProviderCodes.swift`), each mapped to a cause and
/// kept with the page or issue where a real server was seen saying it. Phrases are matched on normalised words (lower
/// case, punctuation and `_`/`-` as spaces), whole words only, in any field that carries the provider's
/// words; `a + b` needs both. The first matching row wins, so specific rows come before general ones.
/// The cases these rows were checked against are in `Tests/fixtures/provider-errors.jsonl`.
extension ProviderErrors {
    public static let table: [ProviderErrorEntry] = numbers + codes + phrases + fallbackPhrases

    /// Phrases, most specific first. A row never names a host: the words decide, whoever says them.
    static let phrases: [ProviderErrorEntry] = [
        // The client application's own callback errors: its stored state did not answer the callback.
        .init(
            "Authlib / oauthlib", .phrase("mismatching state"), .stateMismatch,
            "https://github.com/auth0-samples/auth0-python-web-app/issues/59"),
        .init(
            "any", .phrase("state not equal"), .stateMismatch,
            "https://github.com/auth0-samples/auth0-python-web-app/issues/59"),
        .init(
            "any", .phrase("state mismatch"), .stateMismatch,
            "https://github.com/auth0/express-openid-connect/issues/170"),
        .init(
            "Auth.js", .phrase("state cookie"), .stateMismatch, "https://github.com/nextauthjs/next-auth/issues/7329"),
        .init("Auth.js", .phrase("checks state"), .stateMismatch, "https://github.com/langfuse/langfuse/issues/5691"),
        .init(
            "Passport", .phrase("verify authorization request state"), .stateMismatch,
            "https://github.com/auth0/passport-auth0/issues/154"),
        .init(
            "OmniAuth", .phrase("csrf detected"), .stateMismatch,
            "https://github.com/omniauth/omniauth-oauth2/issues/140"),
        .init(
            "Spring Security", .phrase("authorization request not found"), .stateMismatch,
            "https://github.com/spring-attic/spring-security-oauth/issues/1905"),
        .init(
            "ASP.NET Core", .phrase("correlation failed"), .stateMismatch,
            "https://github.com/DuendeArchive/IdentityServer4/issues/2886"),
        .init(
            "ASP.NET Core", .phrase("oauth state was missing"), .stateMismatch,
            "https://github.com/aspnet-contrib/AspNet.Security.OAuth.Providers/issues/436"),
        .init(
            "oidc-client-ts", .phrase("no matching state"), .stateMismatch,
            "https://github.com/authts/react-oidc-context/issues/445"),
        .init(
            "python-social-auth", .phrase("authstatemissing"), .stateMismatch,
            "https://github.com/omab/python-social-auth/issues/166"),
        .init(
            "python-social-auth", .phrase("state missing"), .stateMismatch,
            "https://github.com/omab/python-social-auth/issues/166"),
        .init(
            "express-openid-connect", .phrase("missing state"), .stateMismatch,
            "https://github.com/auth0/nextjs-auth0/issues/1063"),
        .init(
            "any", .phrase("invalid state"), .stateMismatch, "https://github.com/langleyfoxall/xero-laravel/issues/30"),
        // Texts that list several causes (RFC 6749 §5.2 copied, "invalid or expired"): the cause stays open.
        .init(
            "Okta", .phrase("invalid or has expired"), .codeInvalid,
            "https://developer.okta.com/docs/reference/error-codes/"),
        .init("GitHub", .phrase("incorrect or expired"), .codeInvalid, github),
        .init(
            "any", .phrase("invalid or expired"), .codeInvalid, "https://developer.okta.com/docs/reference/error-codes/"
        ),
        .init(
            "any", .phrase("or has expired"), .codeInvalid, "https://github.com/oktadev/okta-smartfhir-docs/issues/13"),
        .init(
            "Instagram", .phrase("not found or was already used"), .codeInvalid,
            "https://github.com/jaredhanson/passport-instagram/issues/9"),
        .init(
            "Microsoft Entra ID", .phrase("invalid or malformed"), .codeInvalid,
            "https://github.com/AzureAD/microsoft-identity-web/issues/1435"),
        .init(
            "Xero", .phrase("invalid scope"), .invalidScope,
            "https://github.com/XeroAPI/xero-python-oauth2-app/issues/14"),
        .init("Auth0", .phrase("or code verifier"), .codeInvalid, "https://github.com/auth0/nextjs-auth0/issues/1367"),
        .init(
            "Apple", .phrase("expired or has been revoked"), .codeInvalid,
            "https://github.com/ananay/apple-auth/pull/41"),
        .init(
            "LinkedIn", .phrase("redirect uri + code verifier"), .codeInvalid,
            "https://learn.microsoft.com/en-us/linkedin/shared/authentication/authorization-code-flow"),
        .init(
            "OpenIddict", .phrase("no longer valid"), .codeInvalid,
            "https://github.com/openiddict/openiddict-core/issues/471"),
        // A parameter missing from the request names that parameter: it is the request, not the parameter's value.
        .init(
            "Google", .phrase("missing required parameter"), .invalidRequest,
            "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        .init(
            "Microsoft Entra ID", .phrase("must contain the following parameter"), .invalidRequest,
            "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        // PKCE: the verifier or the challenge.
        .init(
            "any", .phrase("code verifier"), .pkceMismatch,
            "https://github.com/openiddict/openiddict-core/issues/1225"),
        .init(
            "any", .phrase("codeverifier"), .pkceMismatch, "https://github.com/openiddict/openiddict-core/issues/1225"),
        .init(
            "any", .phrase("code challenge"), .pkceMismatch,
            "https://github.com/AzureAD/microsoft-authentication-library-for-js/issues/7425"),
        .init("any", .phrase("pkce"), .pkceMismatch, "https://github.com/pennersr/django-allauth/issues/2916"),
        .init(
            "any", .phrase("verifier"), .pkceMismatch,
            "https://github.com/AzureAD/microsoft-authentication-library-for-js/issues/7425"),
        // Clock: a JWT or assertion outside its time window.
        .init(
            "Microsoft Entra ID", .phrase("valid time range"), .clockSkew,
            "https://github.com/AzureAD/microsoft-authentication-library-for-java/issues/984"),
        .init(
            "Google", .phrase("reasonable timeframe"), .clockSkew, "https://github.com/fastlane/fastlane/issues/14972"),
        .init("Google", .phrase("short lived token"), .clockSkew, "https://github.com/fastlane/fastlane/issues/14972"),
        .init("any", .phrase("not yet valid"), .clockSkew, "https://www.rfc-editor.org/rfc/rfc7523#section-3"),
        .init("any", .phrase("not before"), .clockSkew, "https://www.rfc-editor.org/rfc/rfc7523#section-3"),
        .init("any", .phrase("issued in the future"), .clockSkew, "https://www.rfc-editor.org/rfc/rfc7523#section-3"),
        .init("any", .phrase("clock skew"), .clockSkew, "https://www.rfc-editor.org/rfc/rfc7523#section-3"),
        .init("any", .phrase("iat + exp"), .clockSkew, "https://github.com/fastlane/fastlane/issues/14972"),
        // A JWT or assertion that does not verify.
        .init(
            "Google", .phrase("jwt signature"), .jwtInvalid,
            "https://github.com/spring-attic/spring-cloud-gcp/issues/2634"),
        .init(
            "Adobe IMS", .phrase("signature"), .jwtInvalid, "https://github.com/AdobeDocs/adobeio-auth/issues/67"),
        .init(
            "Salesforce", .phrase("audience validation"), .jwtInvalid,
            "https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_flow_errors.htm&type=5"),
        .init("any", .phrase("invalid audience"), .jwtInvalid, "https://www.rfc-editor.org/rfc/rfc7523#section-3"),
        .init("any", .phrase("invalid assertion"), .jwtInvalid, "https://www.rfc-editor.org/rfc/rfc7523#section-3.1"),
        // Redirect URI.
        .init(
            "any", .phrase("redirect uri"), .redirectURIMismatch,
            "https://github.com/googleapis/google-api-php-client/issues/2559"),
        .init(
            "any", .phrase("redirect uris"), .redirectURIMismatch,
            "https://github.com/googleapis/google-api-php-client/issues/2559"),
        .init(
            "any", .phrase("redirecturi"), .redirectURIMismatch,
            "https://github.com/googleapis/google-api-php-client/issues/2559"),
        .init(
            "any", .phrase("redirect url"), .redirectURIMismatch,
            "https://github.com/jpbruinsslot/slack-term/issues/265"),
        .init(
            "any", .phrase("redirection uri"), .redirectURIMismatch,
            "https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1"),
        .init(
            "any", .phrase("invalid redirect"), .redirectURIMismatch,
            "https://github.com/ItsIgnacioPortal/mass-reddit-downvoter/issues/4"),
        .init(
            "any", .phrase("callback url"), .redirectURIMismatch,
            "https://auth0.com/docs/authenticate/login/auth0-universal-login/configure-default-login-routes"),
        .init("Microsoft Entra ID", .phrase("reply url"), .redirectURIMismatch, entra),
        .init("Microsoft Entra ID", .phrase("reply address"), .redirectURIMismatch, entra),
        // The request itself (before the client rows: "client_secret should not be passed" is not a bad secret).
        .init(
            "Facebook", .phrase("should not be passed"), .invalidRequest,
            "https://github.com/laravel/socialite/issues/385"),
        // Reuse and expiry.
        .init("any", .phrase("already used"), .codeReused, "https://github.com/davidjrh/dnn.azureadprovider/issues/17"),
        .init("any", .phrase("already been used"), .codeReused, "https://github.com/ananay/apple-auth/pull/41"),
        .init(
            "any", .phrase("already redeemed"), .codeReused, "https://github.com/davidjrh/dnn.azureadprovider/issues/17"
        ),
        .init(
            "any", .phrase("already been redeemed"), .codeReused,
            "https://github.com/davidjrh/dnn.azureadprovider/issues/17"),
        .init("any", .phrase("already consumed"), .codeReused, "https://github.com/wso2/product-is/issues/16395"),
        .init("any", .phrase("already exchanged"), .codeReused, "https://github.com/wso2/product-is/issues/16395"),
        .init(
            "WSO2 Identity Server", .phrase("inactive authorization code"), .codeReused,
            "https://github.com/wso2/product-is/issues/16395"),
        .init(
            "league/oauth2-server", .phrase("authorization code has been revoked"), .codeReused,
            "https://github.com/laravel/passport/issues/209"),
        .init("Facebook", .phrase("has been used"), .codeReused, "https://github.com/laravel/socialite/issues/385"),
        .init("any", .phrase("was used"), .codeReused, "https://github.com/ananay/apple-auth/pull/41"),
        .init("any", .phrase("reused"), .codeReused, "https://github.com/ananay/apple-auth/pull/41"),
        .init("Keycloak", .phrase("maximum allowed refresh token reuse"), .refreshRevoked, keycloak),
        .init("Keycloak", .phrase("stale token"), .refreshRevoked, keycloak),
        .init("Keycloak", .phrase("token is not active"), .refreshExpired, keycloak),
        .init(
            "Keycloak", .phrase("session not active"), .refreshRevoked,
            "https://github.com/fa-fifi/keycloak_wrapper/issues/57"),
        .init(
            "Google", .phrase("expired or revoked"), .refreshRevoked,
            "https://developers.google.com/identity/protocols/oauth2#expiration"),
        .init(
            "any", .phrase("secret + expired"), .invalidClient,
            "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        .init("any", .phrase("assertion + expired"), .clockSkew, "https://www.rfc-editor.org/rfc/rfc7523#section-3"),
        .init("any", .phrase("expired"), .codeExpired, "https://github.com/Azure/azure-cli/issues/14244"),
        .init("any", .phrase("revoked"), .refreshRevoked, "https://github.com/Azure/azure-cli/issues/16745"),
        // A refresh token the server names as invalid, whatever its code (Atlassian sends unauthorized_client).
        .init(
            "Atlassian", .phrase("refresh token + invalid"), .refreshInvalid,
            "https://github.com/raycast/extensions/issues/11836"),
        // Grant and response types (before the client rows: "client_credentials" is a grant's name).
        .init(
            "any", .phrase("grant type"), .unsupportedGrantType, "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        .init(
            "any", .phrase("response type"), .unsupportedGrantType,
            "https://github.com/docusign/docusign-esign-csharp-client/issues/270"),
        // The client.
        .init(
            "any", .phrase("client authentication"), .invalidClient,
            "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        .init("any", .phrase("client credentials"), .invalidClient, github),
        .init("any", .phrase("client secret"), .invalidClient, entra),
        .init("any", .phrase("client id"), .invalidClient, "https://github.com/laravel/socialite/issues/315"),
        .init("any", .phrase("unknown client"), .invalidClient, "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        .init("any", .phrase("invalid client"), .invalidClient, "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        .init(
            "any", .phrase("client is not authorized"), .invalidClient, "https://github.com/auth0/ruby-auth0/issues/190"
        ),
        .init(
            "Shopify", .phrase("find + application"), .invalidClient,
            "https://github.com/Shopify/embedded-app-example/issues/32"),
        .init(
            "Stripe", .phrase("client identifier"), .invalidClient,
            "https://github.com/enupal/stripe/issues/372"),
        .init("any", .phrase("application not found"), .invalidClient, entra),
        .init(
            "any", .phrase("application id"), .invalidClient,
            "https://github.com/pinterest/pinterest-api-demo/issues/16"),
        .init(
            "any", .phrase("invalid application"), .invalidClient,
            "https://github.com/pinterest/pinterest-api-demo/issues/16"),
        .init(
            "any", .phrase("appid"), .invalidClient,
            "https://learn.microsoft.com/en-us/linkedin/shared/authentication/authorization-code-flow"),
        .init(
            "DocuSign", .phrase("integration key"), .invalidClient,
            "https://github.com/docusign/docusign-esign-csharp-client/issues/270"),
        .init(
            "Fitbit", .phrase("authorization header"), .invalidClient,
            "https://dev.fitbit.com/build/reference/web-api/troubleshooting-guide/oauth2-tutorial/"),
        .init(
            "any", .phrase("unauthorized client"), .invalidClient,
            "https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1"),
        // Scope, grant and response types.
        .init("any", .phrase("not granted"), .accessDenied, "https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1"),
        .init("any", .phrase("scope"), .invalidScope, "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        // The wrong tenant, realm or endpoint.
        .init(
            "Microsoft Entra ID", .phrase("tenant + not found"), .wrongEndpoint,
            "https://github.com/microsoft/azure-tools-for-java/issues/3900"),
        .init(
            "Okta", .phrase("authorization server id"), .wrongEndpoint,
            "https://developer.okta.com/docs/reference/error-codes/"),
        .init(
            "Figma", .phrase("make requests to"), .wrongEndpoint, "https://github.com/GitbookIO/integrations/pull/824"),
        // The resource owner's credentials (RFC 6749 §5.2: invalid_grant).
        .init("any", .phrase("username or password"), .invalidGrant, "https://github.com/casdoor/casdoor/pull/662"),
        .init(
            "Salesforce", .phrase("authentication failure"), .invalidGrant,
            "https://github.com/omniphx/forrest/issues/274"),
        .init(
            "any", .phrase("invalid credentials"), .invalidGrant, "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        // The user or a policy said no; a silent request needs the user.
        .init(
            "Google", .phrase("restricted to users"), .accessDenied,
            "https://github.com/GAM-team/got-your-back/issues/274"),
        .init("any", .phrase("access denied"), .accessDenied, "https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1"),
        .init("any", .phrase("denied"), .accessDenied, "https://github.com/GAM-team/got-your-back/issues/274"),
        .init("Okta", .phrase("not assigned"), .accessDenied, "https://developer.okta.com/docs/reference/error-codes/"),
        .init(
            "Salesforce", .phrase("ip restricted"), .accessDenied,
            "https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_flow_errors.htm&type=5"),
        .init(
            "Salesforce", .phrase("inactive user"), .accessDenied, "https://github.com/restforce/restforce/issues/303"),
        .init(
            "any", .phrase("login required"), .interactionRequired,
            "https://openid.net/specs/openid-connect-core-1_0.html#AuthError"),
        .init(
            "any", .phrase("consent required"), .interactionRequired,
            "https://openid.net/specs/openid-connect-core-1_0.html#AuthError"),
        .init(
            "any", .phrase("interaction required"), .interactionRequired,
            "https://openid.net/specs/openid-connect-core-1_0.html#AuthError"),
        // Load and failures.
        .init("any", .phrase("rate limit"), .rateLimited, "https://www.rfc-editor.org/rfc/rfc6585#section-4"),
        .init("any", .phrase("too many requests"), .rateLimited, "https://www.rfc-editor.org/rfc/rfc6585#section-4"),
        .init(
            "any", .phrase("temporarily unavailable"), .serverError,
            "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        .init("any", .phrase("internal server error"), .serverError, "https://github.com/twitchdev/issues/issues/200"),
        .init(
            "any", .phrase("internal error"), .serverError,
            "https://github.com/Azure-Samples/active-directory-b2c-dotnet-webapp-and-webapi/issues/8"),
        .init("any", .phrase("server error"), .serverError, "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        .init("any", .phrase("erred"), .serverError, "https://github.com/snarfed/oauth-dropins/issues/729"),
    ]

    /// Words that name what was refused but not why: read only when the code itself says no more (invalid_grant,
    /// invalid_request, or a code the tables do not know), so that they never override an explicit RFC code such as
    /// invalid_client or invalid_scope. (The rows above do: a provider's own words beat its choice of code.)
    static let fallbackPhrases: [ProviderErrorEntry] = [
        .init(
            "any", .phrase("refresh token"), .refreshInvalid,
            "https://github.com/mauriciovigolo/keycloak-angular/issues/564"),
        .init(
            "any", .phrase("authorization code"), .codeInvalid,
            "https://github.com/QuePort/passport-azure-oauth/issues/6"),
        .init(
            "any", .phrase("auth code"), .codeInvalid,
            "https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code"),
        .init(
            "any", .phrase("invalid code"), .codeInvalid,
            "https://discord.com/developers/docs/topics/oauth2#authorization-code-grant"),
        .init("any", .phrase("code not valid"), .codeInvalid, "https://github.com/keycloak/keycloak/issues/13357"),
        .init(
            "Strava", .phrase("authorizationcode"), .codeInvalid,
            "https://github.com/yihong0618/running_page/issues/523"),
        .init("Zitadel", .phrase("notfound"), .codeInvalid, "https://github.com/zitadel/react-auth/issues/32"),
        .init(
            "any", .phrase("not found"), .codeInvalid, "https://github.com/microsoft/azure-tools-for-java/issues/3900"),
        .init("any", .phrase("invalid request"), .invalidRequest, "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        .init("any", .phrase("malformed"), .invalidRequest, "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
        .init("any", .phrase("is invalid"), .codeInvalid, "https://github.com/distriqt/ANE-Firebase/issues/23"),
        .init(
            "any", .phrase("missing"), .invalidRequest,
            "https://discord.com/developers/docs/topics/oauth2#authorization-code-grant"),
        .init("any", .phrase("required"), .invalidRequest, "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"),
    ]
}
