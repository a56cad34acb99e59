/// Whether a parameter, JSON key, header, form field, cookie or XML element name holds a secret.
///
/// A name is first normalised into lower-case words: camelCase, PascalCase, snake_case, kebab-case,
/// dotted (`pf.pass`), bracketed (`user[password]`), namespaced (`o:Password`) and percent-encoded
/// forms all give the same words. Families then match words, not exact names, so `idToken`,
/// `X-Amz-Security-Token` and `newPassword` are found without being listed.
public enum SecretNames {
    /// The family a name belongs to, or `nil` for a readable name.
    public static func family(of name: some StringProtocol) -> SecretFamily? {
        cache.value(for: String(name), compute: classify).map { SecretFamily.all[$0] }
    }

    public static func isSecret(_ name: some StringProtocol) -> Bool { family(of: name) != nil }

    private static let cache = NameCache<String, Int?>()

    /// The index in `SecretFamily.all` of the family a name belongs to.
    static func classify(_ name: String) -> Int? {
        let words = words(of: name)
        guard !words.isEmpty else { return nil }
        if ReadableNames.exact.contains(words.joined(separator: "_")) { return nil }
        // An XML namespace prefix (`wsse:UsernameToken`) does not change what the name is.
        if name.contains(":"), words.count > 1,
            ReadableNames.exact.contains(words.dropFirst().joined(separator: "_"))
        {
            return nil
        }
        return SecretFamily.all.firstIndex { $0.matches(words) }
    }

    /// Lower-case words of a name. `idToken` → id, token; `SAMLResponse` → saml, response;
    /// `ASP.NET_SessionId` → asp, net, session, id; `user%5Bpassword%5D` → user, password.
    public static func words(of name: some StringProtocol) -> [String] {
        // Unicode case folding first for non-ASCII names: the Kelvin sign K folds onto k.
        var bytes = name.utf8.allSatisfy({ $0 < 0x80 }) ? Array(name.utf8) : Array(name.lowercased().utf8)
        if bytes.contains(UInt8(ascii: "%")) {
            bytes = Array(FormCoding.decode(String(decoding: bytes, as: UTF8.self)).utf8)
        }
        var words: [String] = []
        var current: [UInt8] = []
        func flush() {
            if !current.isEmpty { words.append(String(decoding: current, as: UTF8.self)) }
            current.removeAll(keepingCapacity: true)
        }
        for (i, c) in bytes.enumerated() {
            let isUpper = c >= 0x41 && c <= 0x5A
            let isLower = c >= 0x61 && c <= 0x7A
            let isDigit = c >= 0x30 && c <= 0x39
            guard isUpper || isLower || isDigit || c >= 0x80 else {
                flush()
                continue
            }
            if isUpper, !current.isEmpty, i > 0 {
                let previous = bytes[i - 1]
                let previousUpper = previous >= 0x41 && previous <= 0x5A
                let nextLower = i + 1 < bytes.count && bytes[i + 1] >= 0x61 && bytes[i + 1] <= 0x7A
                // idToken: lower → Upper starts a word; SAMLResponse: the R before "esponse" does too.
                if !previousUpper || nextLower { flush() }
            }
            current.append(isUpper ? c | 0x20 : c)
        }
        flush()
        return words
    }
}

/// One family of secret names. Tables are data: each row says where the knowledge comes from.
public struct SecretFamily: Sendable {
    public let id: String
    /// Words that make a name secret wherever they stand (`client_secret`, `secretKey`).
    let anywhere: Set<String>
    /// Words that make a name secret when they are its last word (`error_code` is readable, `user_code` not:
    /// see `qualifiers`).
    let last: Set<String>
    /// For `last`: when non-empty, the word before must be one of these (or the name is that word alone).
    let qualifiers: Set<String>
    /// Word sequences that make a name secret wherever they stand (`api key`, `session id`).
    let sequences: [[String]]
    /// Suffixes of one run-together word (`accesstoken`, `newpassword`, `jsessionid`).
    let suffixes: [String]
    /// Names that show the family, for `authtap audit --rules` and the canary tests.
    public let examples: [String]
    public let source: String

    /// Whether the words name a secret of this family. A family word followed by a word in
    /// `ReadableNames.metadataAfter` names a property of the secret, not the secret (`token_type`).
    func matches(_ words: [String]) -> Bool {
        for (i, word) in words.enumerated() {
            let next = i + 1 < words.count ? words[i + 1] : nil
            let readableNext = next.map { ReadableNames.metadataAfter.contains($0) } ?? false
            if anywhere.contains(word), !readableNext { return true }
            if suffixes.contains(where: { word.hasSuffix($0) }), !readableNext { return true }
        }
        // Run-together spellings split oddly by case (`SAMLart` → sam, lart): the suffixes are checked
        // against the whole name too.
        let joined = words.joined()
        if words.count > 1, suffixes.contains(where: { joined.hasSuffix($0) }) { return true }
        if let final = words.last, last.contains(final) {
            if qualifiers.isEmpty || words.count == 1 { return true }
            if words.count >= 2, qualifiers.contains(words[words.count - 2]) { return true }
        }
        for sequence in sequences where sequence.count <= words.count {
            for start in 0...(words.count - sequence.count)
            where words[start..<(start + sequence.count)].elementsEqual(sequence) {
                let after = start + sequence.count
                if after < words.count, ReadableNames.metadataAfter.contains(words[after]) { continue }
                return true
            }
        }
        return false
    }

    static let detectSecretsKeywords = "Yelp/detect-secrets detect_secrets/plugins/keyword.py (DENYLIST)"
    static let gitleaksGeneric = "gitleaks config/gitleaks.toml [[rules]] id=generic-api-key (keywords)"

    /// Every family, in the order they are tried.
    public static let all: [SecretFamily] = [
        SecretFamily(
            id: "password",
            anywhere: ["password", "passwd", "pwd", "pass", "passcode", "passphrase", "pin", "pword", "passw", "pswd"],
            last: [], qualifiers: [], sequences: [],
            suffixes: ["password", "passwd", "passcode", "passphrase"],
            examples: [
                "password", "passwd", "pwd", "pf.pass", "credentials.passcode", "user[password]", "newPassword",
                "Passphrase", "pin",
            ],
            source: "\(detectSecretsKeywords): pass, password, passwd, pwd; PingFederate form field pf.pass"),
        SecretFamily(
            id: "secret", anywhere: ["secret", "secrets"], last: [], qualifiers: [], sequences: [],
            suffixes: ["secret"],
            examples: ["client_secret", "clientSecret", "ClientSecret", "x-client-secret", "app_secret", "secretKey"],
            source: "RFC 6749 §2.3.1 client_secret; \(detectSecretsKeywords): secret"),
        SecretFamily(
            id: "token", anywhere: ["token", "jwt"], last: [], qualifiers: [], sequences: [],
            suffixes: ["token"],
            examples: [
                "access_token", "refresh_token", "id_token", "idToken", "refreshToken", "AccessToken",
                "id_token_hint", "subject_token", "X-Auth-Token", "X-Amz-Security-Token", "x-csrf-token",
                "authenticity_token", "X-Forwarded-Access-Token", "mfa_token", "accesstoken",
            ],
            source: "RFC 6749 §5.1, RFC 8693 §2.1, OIDC Core §3.1.2.1 id_token_hint; \(gitleaksGeneric): token"),
        SecretFamily(
            id: "assertion", anywhere: ["assertion", "assertions"], last: [], qualifiers: [], sequences: [],
            suffixes: ["assertion"],
            examples: ["assertion", "client_assertion", "saml:Assertion"],
            source: "RFC 7521 §4.1 assertion, client_assertion; RFC 7522 SAML assertion grant"),
        SecretFamily(
            id: "api-key", anywhere: ["apikey", "apikeys"], last: [], qualifiers: [],
            sequences: [
                ["api", "key"], ["api", "keys"], ["subscription", "key"], ["access", "key"], ["app", "key"],
                ["application", "key"], ["master", "key"], ["license", "key"], ["client", "key"],
                ["auth", "key"], ["account", "key"], ["shared", "key"], ["functions", "key"], ["secret", "key"],
                ["signing", "key"], ["encryption", "key"], ["session", "key"],
            ],
            suffixes: ["apikey", "accesskey", "appkey", "accountkey", "subscriptionkey", "secretkey"],
            examples: [
                "api_key", "apiKey", "X-Api-Key", "X-Goog-Api-Key", "Ocp-Apim-Subscription-Key", "AccountKey",
                "aws_access_key_id", "x-functions-key",
            ],
            source: "\(detectSecretsKeywords): api_key, apikey; Azure API Management Ocp-Apim-Subscription-Key; "
                + "Google Cloud X-Goog-Api-Key; Azure Storage connection strings AccountKey"),
        SecretFamily(
            id: "private-key", anywhere: ["privatekey"], last: [], qualifiers: [], sequences: [["private", "key"]],
            suffixes: ["privatekey"],
            examples: ["private_key", "privateKey", "private_key_pem"],
            source: "\(detectSecretsKeywords): private_key; Google service-account JSON private_key"),
        SecretFamily(
            id: "credential", anywhere: ["credential", "credentials", "creds"], last: [], qualifiers: [], sequences: [],
            suffixes: ["credential", "credentials"],
            examples: ["credentials", "X-Amz-Credential", "userCredential"],
            source: "\(gitleaksGeneric): credential, creds; AWS SigV4 query X-Amz-Credential"),
        SecretFamily(
            id: "code", anywhere: ["otp", "totp", "hotp"], last: ["code", "codes"],
            qualifiers: [
                "auth", "authorization", "device", "user", "otp", "mfa", "verification", "sms", "email",
                "recovery", "backup", "security", "access", "login", "activation", "confirmation", "reset",
                "pairing", "onetime", "time", "twofactor", "2fa", "totp", "magic", "invite", "invitation",
                "passcode", "pin", "session",
            ],
            sequences: [["code", "verifier"]], suffixes: [],
            examples: [
                "code", "device_code", "user_code", "code_verifier", "otp", "totp", "mfa_code",
                "verification_code", "one_time_code", "recovery_codes",
            ],
            source: "RFC 6749 §4.1.2 code, RFC 7636 §4.1 code_verifier, RFC 8628 §3.2 device_code and user_code; "
                + "RFC 6238 TOTP"),
        SecretFamily(
            id: "session", anywhere: ["sessionid", "sessid", "jsessionid", "phpsessid", "sid"], last: [],
            qualifiers: [], sequences: [["session", "id"]], suffixes: ["sessionid", "sessid"],
            examples: ["session_id", "sessionId", "JSESSIONID", "PHPSESSID", "ASP.NET_SessionId", "connect.sid"],
            source: "OWASP Session Management Cheat Sheet (session ID names JSESSIONID, PHPSESSID, ASP.NET_SessionId)"),
        SecretFamily(
            id: "saml", anywhere: ["samlresponse", "samlrequest", "samlart"], last: [], qualifiers: [],
            sequences: [["saml", "response"], ["saml", "request"], ["saml", "art"]],
            suffixes: ["samlresponse", "samlrequest", "samlart"],
            examples: ["SAMLResponse", "SAMLRequest", "SAMLart"],
            source: "OASIS SAML 2.0 Bindings §3.4.4 and §3.5.4 (SAMLRequest, SAMLResponse), §3.6.3 (SAMLart)"),
        SecretFamily(
            id: "authorization", anywhere: [], last: ["authorization", "auth", "cookie", "cookies"], qualifiers: [],
            sequences: [], suffixes: [],
            examples: ["authorization", "Proxy-Authorization", "auth", "basic_auth"],
            source: "RFC 9110 §11.6.2 Authorization; Docker config.json auths.*.auth (base64 user:password)"),
        SecretFamily(
            id: "signature", anywhere: [], last: ["signature", "sig", "ticket"], qualifiers: [], sequences: [],
            suffixes: [],
            examples: ["X-Amz-Signature", "sig", "Signature", "ticket"],
            source: "AWS SigV4 presigned URLs X-Amz-Signature; Azure SAS sig; Apereo CAS protocol ticket"),
    ]
}

/// Names that stay readable.
enum ReadableNames {
    /// A family word followed by one of these names a property of a secret, not the secret:
    /// `token_type`, `client_assertion_type`, `token_endpoint_auth_method`, `id_token_signing_alg_values_supported`.
    static let metadataAfter: Set<String> = [
        "type", "types", "endpoint", "endpoints", "url", "uri", "uris", "expires", "expiry", "expiration", "exp",
        "lifetime", "ttl", "validity", "length", "len", "format", "formats", "usage", "supported", "method",
        "methods", "alg", "algs", "algorithm", "enc", "signed", "signing", "encryption", "name", "names", "count",
        "policy", "policies", "required", "min", "max", "status", "location", "header", "mode", "kind", "version",
        "reset", "changed", "updated", "created", "at", "strength", "placeholder", "label",
    ]
    /// Whole names (words joined with `_`) that a family would catch but that carry no secret.
    static let exact: Set<String> = [
        "pass_through", "passthrough", "bypass", "session_state", "auth_time", "code_challenge",
        "code_challenge_method", "response_code", "status_code", "error_code",
        // WS-Security's UsernameToken is a container: its Password child is masked by name, its Username not.
        "username_token",
    ]
}
