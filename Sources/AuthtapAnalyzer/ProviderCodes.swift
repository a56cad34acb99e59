/// Provider knowledge as data, the codes: numeric codes (AADSTS, Facebook subcodes), providers' own error
/// codes, and RFC 6749's, each mapped to a cause with the page or issue where a real server was seen sending it.
/// Phrases are in `ProviderPhrases.swift`; the cases both were checked against are in
/// `Tests/fixtures/provider-errors.jsonl`.
extension ProviderErrors {
    /// Numeric codes: Entra `AADSTS…`/`error_codes`, Facebook `error_subcode`.
    static let numbers: [ProviderErrorEntry] = [
        .init(
            "Microsoft Entra ID", .number(54005), .codeReused,
            "https://github.com/AzureAD/microsoft-identity-web/issues/2328"),
        .init("Microsoft Entra ID", .number(70008), .codeExpired, entra),
        .init("Microsoft Entra ID", .number(50011), .redirectURIMismatch, entra),
        .init("Microsoft Entra ID", .number(500113), .redirectURIMismatch, entra),
        .init(
            "Microsoft Entra ID", .number(501481), .pkceMismatch,
            "https://github.com/CoasterKaty/PHPAzureADoAuth/issues/18"),
        .init("Microsoft Entra ID", .number(50148), .pkceMismatch, entra),
        .init("Microsoft Entra ID", .number(7000215), .invalidClient, entra),
        .init("Microsoft Entra ID", .number(7000222), .invalidClient, entra),
        .init(
            "Microsoft Entra ID", .number(7000218), .invalidClient, "https://github.com/secureworks/TokenMan/issues/1"),
        .init("Microsoft Entra ID", .number(700016), .invalidClient, entra),
        .init(
            "Microsoft Entra ID", .number(700024), .clockSkew,
            "https://github.com/AzureAD/microsoft-authentication-library-for-java/issues/984"),
        .init(
            "Microsoft Entra ID", .number(90002), .wrongEndpoint,
            "https://github.com/microsoft/azure-tools-for-java/issues/3900"),
        .init("Microsoft Entra ID", .number(700082), .refreshExpired, entra),
        .init("Microsoft Entra ID", .number(50173), .refreshRevoked, entra),
        .init("Microsoft Entra ID", .number(70011), .invalidScope, entra),
        .init("Microsoft Entra ID", .number(65001), .interactionRequired, entra),
        .init("Microsoft Entra ID", .number(50076), .interactionRequired, entra),
        .init("Microsoft Entra ID", .number(50079), .interactionRequired, entra),
        .init("Microsoft Entra ID", .number(50058), .interactionRequired, entra),
        .init(
            "Microsoft Entra ID", .number(50013), .jwtInvalid,
            "https://github.com/Azure/azure-sdk-for-java/issues/25109"),
        .init(
            "Facebook", .number(36007), .codeExpired,
            "https://developers.facebook.com/docs/graph-api/guides/error-handling/"),
        .init(
            "Facebook", .number(36009), .codeReused,
            "https://developers.facebook.com/docs/graph-api/guides/error-handling/"),
    ]

    /// Error codes, compared without case or punctuation (`InvalidScope` is `invalid_scope`).
    static let codes: [ProviderErrorEntry] = [
        .init("GitHub", .code("bad_verification_code"), .codeInvalid, github),
        .init("GitHub", .code("incorrect_client_credentials"), .invalidClient, github),
        .init("GitHub", .code("unverified_user_email"), .accessDenied, github),
        .init(
            "GitHub", .code("device_flow_disabled"), .unsupportedGrantType,
            "https://github.com/octokit/create-octokit-project.js/issues/208"),
        .init("Slack", .code("invalid_code"), .codeInvalid, slack),
        .init("Slack", .code("code_already_used"), .codeReused, slack),
        .init("Slack", .code("bad_redirect_uri"), .redirectURIMismatch, slack),
        .init("Slack", .code("bad_client_secret"), .invalidClient, slack),
        .init("Slack", .code("invalid_client_id"), .invalidClient, slack),
        .init("Slack", .code("invalid_refresh_token"), .refreshInvalid, slack),
        .init(
            "HubSpot", .code("BAD_REFRESH_TOKEN"), .refreshInvalid,
            "https://www.nango.dev/blog/hubspot-oauth-bad-refresh-token"),
        .init(
            "LinkedIn", .code("invalid_redirect_uri"), .redirectURIMismatch,
            "https://learn.microsoft.com/en-us/linkedin/shared/authentication/authorization-code-flow"),
        .init(
            "Flask-OAuthlib", .code("mismatching_redirect_uri"), .redirectURIMismatch,
            "https://github.com/django-oauth/django-oauth-toolkit/issues/139"),
        .init(
            "Amazon Cognito", .code("redirect_mismatch"), .redirectURIMismatch,
            "https://docs.aws.amazon.com/cognito/latest/developerguide/authorization-endpoint.html"),
        .init(
            "Authlib", .code("mismatching_state"), .stateMismatch,
            "https://github.com/auth0-samples/auth0-python-web-app/issues/59"),
        .init(
            "RFC 8628", .code("authorization_pending"), .devicePending,
            "https://www.rfc-editor.org/rfc/rfc8628#section-3.5"),
        .init("RFC 8628", .code("slow_down"), .devicePending, "https://www.rfc-editor.org/rfc/rfc8628#section-3.5"),
        .init("RFC 8628", .code("expired_token"), .deviceExpired, "https://www.rfc-editor.org/rfc/rfc8628#section-3.5"),
        .init(
            "Microsoft Entra ID", .code("invalid_resource"), .invalidRequest,
            "https://github.com/laardee/serverless-authentication/pull/7"),
        .init(
            "OpenAM", .code("authorization_declined"), .accessDenied,
            "https://github.com/OpenIdentityPlatform/OpenAM/issues/627"),
        .init("Google", .code("org_internal"), .accessDenied, "https://github.com/GAM-team/got-your-back/issues/274"),
        .init(
            "Google", .code("admin_policy_enforced"), .accessDenied,
            "https://github.com/GAM-team/got-your-back/issues/284"),
        .init(
            "RFC 6749", .code("redirect_uri_mismatch"), .redirectURIMismatch,
            "https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1"),
    ]

    static let entra = "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"
    static let github =
        "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
    static let slack = "https://api.slack.com/methods/oauth.v2.access"
    static let keycloak = "https://www.keycloak.org/docs/latest/server_admin/#_timeouts"

    /// RFC 6749 §4.1.2.1 and §5.2 codes, and OIDC Core §3.1.2.6, after every row above.
    static let rfcCodes: [String: ErrorClass] = [
        "invalidclient": .invalidClient, "unauthorizedclient": .invalidClient,
        "unsupportedgranttype": .unsupportedGrantType, "unsupportedresponsetype": .unsupportedGrantType,
        "invalidscope": .invalidScope, "invalidrequest": .invalidRequest, "invalidgrant": .invalidGrant,
        "accessdenied": .accessDenied, "loginrequired": .interactionRequired,
        "consentrequired": .interactionRequired, "interactionrequired": .interactionRequired,
        "accountselectionrequired": .interactionRequired, "servererror": .serverError,
        "temporarilyunavailable": .serverError, "invalidtoken": .invalidGrant,
    ]
}
