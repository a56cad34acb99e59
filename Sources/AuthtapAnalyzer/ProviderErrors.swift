import AuthtapModel
import Foundation

/// What an authorization server's error response means, once its provider's dialect is read.
public enum ErrorClass: String, Codable, Sendable {
    case codeReused = "code-reused"
    case codeExpired = "code-expired"
    /// Invalid, expired or already used: the server does not say which.
    case codeInvalid = "code-invalid"
    case redirectURIMismatch = "redirect-uri-mismatch"
    case pkceMismatch = "pkce-mismatch"
    case invalidClient = "invalid-client"
    case refreshExpired = "refresh-expired"
    case refreshRevoked = "refresh-revoked"
    case refreshInvalid = "refresh-invalid"
    case invalidScope = "invalid-scope"
    case unsupportedGrantType = "unsupported-grant-type"
    case invalidRequest = "invalid-request"
    case invalidGrant = "invalid-grant"
    case accessDenied = "access-denied"
    case interactionRequired = "interaction-required"
    case serverError = "server-error"
    case other
}

/// An error as a server reported it, in whatever dialect, normalised.
public struct ErrorReport: Sendable, Equatable {
    /// The `error` code (RFC 6749 §5.2), or the provider's equivalent.
    public var code: String
    public var description: String?
    /// Numeric codes: Entra `AADSTS…`/`error_codes`, Facebook `code`/`error_subcode`.
    public var numericCodes: [Int]
    /// Where it came from: `json`, `json-nested` (Facebook), `slack`, `form`, `location`.
    public var dialect: String

    public init(code: String, description: String? = nil, numericCodes: [Int] = [], dialect: String) {
        self.code = code
        self.description = description
        self.numericCodes = numericCodes
        self.dialect = dialect
    }

    /// The short form used in evidence: `invalid_grant: AADSTS54005: …`.
    public var summary: String {
        guard let description, !description.isEmpty else { return code }
        let firstLine = description.split(whereSeparator: \.isNewline).first.map(String.init) ?? description
        return "\(code): \(firstLine.prefix(200))"
    }
}

/// One known provider message, with where it is documented or reported.
public struct ProviderErrorEntry: Sendable {
    public enum Match: Sendable {
        /// The `error` code, exactly.
        case code(String)
        /// Text in the description (ASCII case-insensitive).
        case description(String)
        /// A numeric code (AADSTS number, Facebook subcode).
        case number(Int)
    }
    public var provider: String
    public var match: Match
    public var errorClass: ErrorClass
    public var source: String
}

/// Provider dialects, as data. Order matters: the first matching entry wins, so specific
/// messages come before the generic RFC codes at the end.
public enum ProviderErrors {
    public static let table: [ProviderErrorEntry] = [
        // Microsoft Entra ID (Azure AD): invalid_grant with an AADSTS code in error_description and error_codes.
        .init(
            provider: "Microsoft Entra ID", match: .number(54005), errorClass: .codeReused,
            source: "https://github.com/AzureAD/microsoft-identity-web/issues/2328"),
        .init(
            provider: "Microsoft Entra ID", match: .number(70008), errorClass: .codeExpired,
            source: "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        .init(
            provider: "Microsoft Entra ID", match: .number(50011), errorClass: .redirectURIMismatch,
            source: "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        .init(
            provider: "Microsoft Entra ID", match: .number(501481), errorClass: .pkceMismatch,
            source: "https://github.com/CoasterKaty/PHPAzureADoAuth/issues/18"),
        .init(
            provider: "Microsoft Entra ID", match: .number(7000215), errorClass: .invalidClient,
            source: "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        .init(
            provider: "Microsoft Entra ID", match: .number(7000222), errorClass: .invalidClient,
            source: "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        .init(
            provider: "Microsoft Entra ID", match: .number(700016), errorClass: .invalidClient,
            source: "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        .init(
            provider: "Microsoft Entra ID", match: .number(700082), errorClass: .refreshExpired,
            source: "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        .init(
            provider: "Microsoft Entra ID", match: .number(50173), errorClass: .refreshRevoked,
            source: "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        .init(
            provider: "Microsoft Entra ID", match: .number(70011), errorClass: .invalidScope,
            source: "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        .init(
            provider: "Microsoft Entra ID", match: .number(65001), errorClass: .interactionRequired,
            source: "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"),
        // GitHub: errors in a 200 response, form-encoded unless Accept: application/json.
        .init(
            provider: "GitHub", match: .code("bad_verification_code"), errorClass: .codeInvalid,
            source:
                "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
        ),
        .init(
            provider: "GitHub", match: .code("incorrect_client_credentials"), errorClass: .invalidClient,
            source:
                "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
        ),
        .init(
            provider: "GitHub", match: .code("redirect_uri_mismatch"), errorClass: .redirectURIMismatch,
            source:
                "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
        ),
        .init(
            provider: "GitHub", match: .code("unverified_user_email"), errorClass: .accessDenied,
            source:
                "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
        ),
        // Facebook / Meta Graph API: {"error":{"message","type":"OAuthException","code":100,"error_subcode":…}}.
        .init(
            provider: "Facebook", match: .description("authorization code has been used"), errorClass: .codeReused,
            source: "https://github.com/laravel/socialite/issues/385"),
        .init(
            provider: "Facebook", match: .description("authorization code has expired"), errorClass: .codeExpired,
            source: "https://github.com/SammyK/LaravelFacebookSdk/issues/141"),
        .init(
            provider: "Facebook",
            match: .description("redirect_uri is identical to the one you used in the OAuth dialog"),
            errorClass: .redirectURIMismatch,
            source: "https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow"),
        // Keycloak: invalid_grant with a short description.
        .init(
            provider: "Keycloak", match: .description("PKCE verification failed"), errorClass: .pkceMismatch,
            source: "https://github.com/keycloak/keycloak-community/issues/292"),
        .init(
            provider: "Keycloak", match: .description("Code not valid"), errorClass: .codeInvalid,
            source: "https://github.com/marcospereirampj/python-keycloak/issues/339"),
        .init(
            provider: "Keycloak", match: .description("Incorrect redirect_uri"), errorClass: .redirectURIMismatch,
            source: "https://github.com/marcospereirampj/python-keycloak/issues/207"),
        .init(
            provider: "Keycloak", match: .description("Token is not active"), errorClass: .refreshExpired,
            source: "https://www.keycloak.org/docs/latest/server_admin/#_timeouts"),
        .init(
            provider: "Keycloak", match: .description("Stale token"), errorClass: .refreshRevoked,
            source: "https://www.keycloak.org/docs/latest/server_admin/#_timeouts"),
        .init(
            provider: "Keycloak", match: .description("Maximum allowed refresh token reuse exceeded"),
            errorClass: .refreshRevoked,
            source: "https://www.keycloak.org/docs/latest/server_admin/#_timeouts"),
        // Okta.
        .init(
            provider: "Okta", match: .description("PKCE verification failed"), errorClass: .pkceMismatch,
            source: "https://developer.okta.com/docs/guides/implement-grant-type/authcodepkce/main/"),
        .init(
            provider: "Okta", match: .description("authorization code is invalid or has expired"),
            errorClass: .codeInvalid,
            source: "https://developer.okta.com/docs/reference/error-codes/"),
        .init(
            provider: "Okta",
            match: .description("does not match the redirection URI used in the authorization request"),
            errorClass: .redirectURIMismatch,
            source: "https://developer.okta.com/docs/reference/error-codes/"),
        .init(
            provider: "Okta", match: .description("refresh token is invalid or expired"), errorClass: .refreshInvalid,
            source: "https://developer.okta.com/docs/reference/error-codes/"),
        // Auth0.
        .init(
            provider: "Auth0", match: .description("Invalid authorization code"), errorClass: .codeInvalid,
            source:
                "https://auth0.com/docs/get-started/authentication-and-authorization-flow/authorization-code-flow-with-pkce"
        ),
        .init(
            provider: "Auth0", match: .description("Unknown or invalid refresh token"), errorClass: .refreshInvalid,
            source: "https://auth0.com/docs/secure/tokens/refresh-tokens/refresh-token-rotation"),
        // Google.
        .init(
            provider: "Google", match: .description("Malformed auth code"), errorClass: .codeInvalid,
            source: "https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code"),
        .init(
            provider: "Google", match: .description("Token has been expired or revoked"), errorClass: .refreshRevoked,
            source: "https://developers.google.com/identity/protocols/oauth2#expiration"),
        .init(
            provider: "Google", match: .description("Missing code verifier"), errorClass: .pkceMismatch,
            source: "https://developers.google.com/identity/protocols/oauth2/native-app"),
        // Salesforce.
        .init(
            provider: "Salesforce", match: .description("expired authorization code"), errorClass: .codeExpired,
            source: "https://github.com/omniphx/forrest/issues/169"),
        // Servers that name the verifier in their description.
        .init(
            provider: "Google", match: .description("Invalid code verifier"), errorClass: .pkceMismatch,
            source: "https://github.com/googleapis/google-api-java-client/issues/1479"),
        .init(
            provider: "Spotify", match: .description("code_verifier was incorrect"), errorClass: .pkceMismatch,
            source: "https://github.com/spotify/web-api-examples/issues/126"),
        .init(
            provider: "OpenIddict", match: .description("The specified 'code_verifier' is invalid"),
            errorClass: .pkceMismatch,
            source: "https://github.com/openiddict/openiddict-core/issues/1225"),
        .init(
            provider: "Duende IdentityServer",
            match: .description("Transformed code verifier does not match code challenge"), errorClass: .pkceMismatch,
            source: "https://github.com/DuendeArchive/Support/issues/498"),
        .init(
            provider: "bshaffer/oauth2-server-php", match: .description("The authorization code has expired"),
            errorClass: .codeExpired,
            source: "https://github.com/bshaffer/oauth2-server-php/issues/494"),
        // Slack: {"ok":false,"error":"…"} with HTTP 200.
        .init(
            provider: "Slack", match: .code("invalid_code"), errorClass: .codeInvalid,
            source: "https://api.slack.com/methods/oauth.v2.access"),
        .init(
            provider: "Slack", match: .code("code_already_used"), errorClass: .codeReused,
            source: "https://api.slack.com/methods/oauth.v2.access"),
        .init(
            provider: "Slack", match: .code("bad_redirect_uri"), errorClass: .redirectURIMismatch,
            source: "https://api.slack.com/methods/oauth.v2.access"),
        .init(
            provider: "Slack", match: .code("bad_client_secret"), errorClass: .invalidClient,
            source: "https://api.slack.com/methods/oauth.v2.access"),
        .init(
            provider: "Slack", match: .code("invalid_client_id"), errorClass: .invalidClient,
            source: "https://api.slack.com/methods/oauth.v2.access"),
        .init(
            provider: "Slack", match: .code("invalid_refresh_token"), errorClass: .refreshInvalid,
            source: "https://api.slack.com/methods/oauth.v2.access"),
        // Discord.
        .init(
            provider: "Discord", match: .description("Invalid \"code\" in request"), errorClass: .codeInvalid,
            source: "https://discord.com/developers/docs/topics/oauth2#authorization-code-grant"),
        .init(
            provider: "Discord", match: .description("Invalid \"redirect_uri\" in request"),
            errorClass: .redirectURIMismatch,
            source: "https://discord.com/developers/docs/topics/oauth2#authorization-code-grant"),
        // Amazon Cognito.
        .init(
            provider: "Amazon Cognito", match: .code("invalid_grant"), errorClass: .invalidGrant,
            source: "https://docs.aws.amazon.com/cognito/latest/developerguide/token-endpoint.html"),
    ]

    /// RFC 6749 §4.1.2.1 and §5.2 codes, and OIDC Core §3.1.2.6, after the provider table.
    static let rfcCodes: [String: ErrorClass] = [
        "invalid_client": .invalidClient, "unauthorized_client": .invalidClient,
        "unsupported_grant_type": .unsupportedGrantType, "invalid_scope": .invalidScope,
        "invalid_request": .invalidRequest, "invalid_grant": .invalidGrant,
        "access_denied": .accessDenied, "login_required": .interactionRequired,
        "consent_required": .interactionRequired, "interaction_required": .interactionRequired,
        "account_selection_required": .interactionRequired,
        "server_error": .serverError, "temporarily_unavailable": .serverError,
        "redirect_uri_mismatch": .redirectURIMismatch,
    ]

    /// The class of an error, and the table entry (with its source) that decided it.
    public static func classify(_ report: ErrorReport) -> (ErrorClass, ProviderErrorEntry?) {
        let description = report.description ?? ""
        for entry in table {
            switch entry.match {
            case .code(let code) where report.code == code:
                // The generic Cognito entry only applies to codes no earlier entry explains.
                if entry.errorClass == .invalidGrant { continue }
                return (entry.errorClass, entry)
            case .description(let text) where description.range(of: text, options: .caseInsensitive) != nil:
                return (entry.errorClass, entry)
            case .number(let n) where report.numericCodes.contains(n):
                return (entry.errorClass, entry)
            default: continue
            }
        }
        // Descriptions that say it in RFC words, whatever the server.
        let lower = description.lowercased()
        if report.code == "invalid_grant" {
            if lower.has("code_verifier") || lower.has("code verifier") || lower.has("pkce") {
                return (.pkceMismatch, nil)
            }
            if lower.has("redirect") { return (.redirectURIMismatch, nil) }
            if lower.has("refresh") && lower.has("expired") { return (.refreshExpired, nil) }
            if lower.has("refresh") && lower.has("revoked") { return (.refreshRevoked, nil) }
            if (lower.has("already") && (lower.has("used") || lower.has("redeemed"))) { return (.codeReused, nil) }
        }
        return (rfcCodes[report.code] ?? .other, nil)
    }

    /// Reads an error out of a response body (JSON in any of the dialects above, or a form).
    public static func report(json: JSONValue) -> ErrorReport? {
        guard json.isObject else { return nil }
        // Facebook: a nested error object.
        if case .object = json["error"] ?? .null, let nested = json["error"] {
            var numbers: [Int] = []
            if let c = nested["code"]?.number.flatMap(Int.init(wholeNumber:)) { numbers.append(c) }
            if let s = nested["error_subcode"]?.number.flatMap(Int.init(wholeNumber:)) { numbers.append(s) }
            return ErrorReport(
                code: nested["type"]?.string ?? "error", description: nested["message"]?.string,
                numericCodes: numbers, dialect: "json-nested")
        }
        if let code = json["error"]?.string {
            let description = json["error_description"]?.string ?? json["message"]?.string
            var numbers: [Int] = []
            if case .array(let codes) = json["error_codes"] ?? .null {
                numbers = codes.compactMap { $0.number.flatMap(Int.init(wholeNumber:)) }
            }
            numbers += aadstsCodes(in: description ?? "")
            let dialect = json["ok"] == .bool(false) ? "slack" : "json"
            return ErrorReport(code: code, description: description, numericCodes: numbers, dialect: dialect)
        }
        return nil
    }

    /// An error from form-style pairs (GitHub's default token response, or a redirect's query).
    public static func report(pairs: [(String, String)], dialect: String) -> ErrorReport? {
        guard let code = pairs.first(where: { $0.0 == "error" })?.1 else { return nil }
        let description = pairs.first { $0.0 == "error_description" }?.1
        return ErrorReport(
            code: code, description: description, numericCodes: aadstsCodes(in: description ?? ""), dialect: dialect)
    }

    static func aadstsCodes(in text: String) -> [Int] {
        var result: [Int] = []
        var rest = Substring(text)
        while let r = rest.range(of: "AADSTS") {
            let digits = rest[r.upperBound...].prefix { $0.isASCII && $0.isNumber }
            if let n = Int(digits) { result.append(n) }
            rest = rest[r.upperBound...]
        }
        return result
    }
}
