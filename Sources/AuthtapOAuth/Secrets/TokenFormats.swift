/// A set of bytes as a 256-bit table: membership is one shift and one mask, with no allocation.
public struct ByteClass: Sendable, Hashable {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    /// The class of exactly the ASCII characters in `members`.
    public init(_ members: String) {
        for byte in members.utf8 { insert(byte) }
    }

    private mutating func insert(_ byte: UInt8) {
        let bit = UInt64(1) &<< UInt64(byte & 63)
        switch byte >> 6 {
        case 0: words.0 |= bit
        case 1: words.1 |= bit
        case 2: words.2 |= bit
        default: words.3 |= bit
        }
    }

    @inline(__always)
    public func contains(_ byte: UInt8) -> Bool {
        let bit = UInt64(1) &<< UInt64(byte & 63)
        switch byte >> 6 {
        case 0: return words.0 & bit != 0
        case 1: return words.1 & bit != 0
        case 2: return words.2 & bit != 0
        default: return words.3 & bit != 0
        }
    }

    public func union(_ other: ByteClass) -> ByteClass {
        var out = self
        out.words = (
            words.0 | other.words.0, words.1 | other.words.1, words.2 | other.words.2,
            words.3 | other.words.3
        )
        return out
    }

    public static func == (a: ByteClass, b: ByteClass) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0); hasher.combine(words.1); hasher.combine(words.2); hasher.combine(words.3)
    }

    static let upperLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    static let lowerLetters = "abcdefghijklmnopqrstuvwxyz"
    static let digitChars = "0123456789"

    /// `[A-Za-z]`
    public static let letters = ByteClass(upperLetters + lowerLetters)
    /// `[A-Za-z0-9]`
    public static let alnum = ByteClass(upperLetters + lowerLetters + digitChars)
    /// `[A-Z0-9]`
    public static let upperAlnum = ByteClass(upperLetters + digitChars)
    /// `[A-Za-z0-9_]`, the regex `\w`.
    public static let alnumUnderscore = alnum.union(ByteClass("_"))
    /// `[A-Za-z0-9-]`
    public static let alnumDash = alnum.union(ByteClass("-"))
    /// `[A-Za-z0-9_-]`, RFC 4648 §5.
    public static let base64url = alnum.union(ByteClass("_-"))
    /// `[A-Za-z0-9+/=]`, RFC 4648 §4 with its padding.
    public static let base64 = alnum.union(ByteClass("+/="))
    /// `[0-9a-fA-F]`
    public static let hex = ByteClass(digitChars + "abcdefABCDEF")
}

/// One published credential format: a literal prefix, then a body of allowed bytes.
public struct TokenFormat: Sendable {
    /// e.g. "github-pat" (gitleaks' rule id where there is one).
    public let id: String
    /// Literal prefixes, case-sensitive.
    public let prefixes: [String]
    /// Allowed bytes after the prefix.
    public let body: ByteClass
    public let minBody: Int, maxBody: Int
    /// Where the rule comes from: repository, path, rule id.
    public let source: String
    /// A syntactically valid FAKE example (tests and the canary suite use it).
    public let example: String
    /// A literal the body must contain, where the source keys the rule on it rather than on the prefix
    /// (OpenAI's `T3BlbkFJ`, GitLab's routable `.`).
    public let infix: String?
    /// True for PEM private keys: the match runs from the BEGIN line through the END line.
    public let isPEMBlock: Bool

    init(
        _ id: String, _ prefixes: [String], _ body: ByteClass, _ length: ClosedRange<Int>, source: String,
        example: String, infix: String? = nil, isPEMBlock: Bool = false
    ) {
        self.id = id
        self.prefixes = prefixes
        self.body = body
        self.minBody = length.lowerBound
        self.maxBody = length.upperBound
        self.source = source
        self.example = example
        self.infix = infix
        self.isPEMBlock = isPEMBlock
    }
}

public enum TokenFormats {
    private static let gitleaks = "gitleaks/gitleaks config/gitleaks.toml [[rules]] id="
    private static let detectSecrets = "Yelp/detect-secrets detect_secrets/plugins/"
    private static let noseyParker = "praetorian-inc/noseyparker crates/noseyparker/data/default/rules/"

    /// The fewest bytes any format matches: its shortest prefix and its shortest body.
    public static let shortestMatch = all.map { ($0.prefixes.map(\.utf8.count).min() ?? 0) + $0.minBody }.min() ?? 0

    /// Published formats with a distinctive literal prefix. Bounds are the source's regex, rounded out where the
    /// regex has internal structure (`xoxb-\d{10,13}-\d{10,13}[A-Za-z0-9-]*` becomes one `[A-Za-z0-9-]` body):
    /// a masker would rather cover a little more than leave a credential's tail readable.
    public static let all: [TokenFormat] = [
        // GitHub: the prefix names the token kind.
        TokenFormat(
            "github-pat", ["ghp_"], .alnum, 36...36, source: gitleaks + "github-pat",
            example: fake("ghp_", 36, .alnum)),
        TokenFormat(
            "github-oauth", ["gho_"], .alnum, 36...36, source: gitleaks + "github-oauth",
            example: fake("gho_", 36, .alnum)),
        TokenFormat(
            "github-app-token", ["ghu_", "ghs_"], .alnum, 36...36, source: gitleaks + "github-app-token",
            example: fake("ghs_", 36, .alnum)),
        TokenFormat(
            "github-refresh-token", ["ghr_"], .alnum, 36...36, source: gitleaks + "github-refresh-token",
            example: fake("ghr_", 36, .alnum)),
        TokenFormat(
            "github-fine-grained-pat", ["github_pat_"], .alnumUnderscore, 82...82,
            source: gitleaks + "github-fine-grained-pat", example: fake("github_pat_", 82, .alnumUnderscore)),
        // GitLab.
        TokenFormat(
            "gitlab-pat", ["glpat-"], .base64url, 20...20, source: gitleaks + "gitlab-pat",
            example: fake("glpat-", 20, .base64url)),
        TokenFormat(
            "gitlab-pat-routable", ["glpat-"], base64urlDot, 37...310, source: gitleaks + "gitlab-pat-routable",
            example: fake("glpat-", 27, .base64url) + ".01" + fake("", 7, lowerDigits), infix: "."),
        TokenFormat(
            "gitlab-cicd-job-token", ["glcbt-"], .base64url, 22...26,
            source: gitleaks + "gitlab-cicd-job-token",
            example: "glcbt-64_" + fake("", 20, .base64url)),
        TokenFormat(
            "gitlab-deploy-token", ["gldt-"], .base64url, 20...20, source: gitleaks + "gitlab-deploy-token",
            example: fake("gldt-", 20, .base64url)),
        TokenFormat(
            "gitlab-feature-flag-client-token", ["glffct-"], .base64url, 20...20,
            source: gitleaks + "gitlab-feature-flag-client-token", example: fake("glffct-", 20, .base64url)),
        TokenFormat(
            "gitlab-feed-token", ["glft-"], .base64url, 20...20, source: gitleaks + "gitlab-feed-token",
            example: fake("glft-", 20, .base64url)),
        TokenFormat(
            "gitlab-incoming-mail-token", ["glimt-"], .base64url, 25...25,
            source: gitleaks + "gitlab-incoming-mail-token", example: fake("glimt-", 25, .base64url)),
        TokenFormat(
            "gitlab-kubernetes-agent-token", ["glagent-"], .base64url, 50...50,
            source: gitleaks + "gitlab-kubernetes-agent-token", example: fake("glagent-", 50, .base64url)),
        TokenFormat(
            "gitlab-oauth-app-secret", ["gloas-"], .base64url, 64...64,
            source: gitleaks + "gitlab-oauth-app-secret", example: fake("gloas-", 64, .base64url)),
        TokenFormat(
            "gitlab-ptt", ["glptt-"], .hex, 40...40, source: gitleaks + "gitlab-ptt",
            example: fake("glptt-", 40, .hex)),
        TokenFormat(
            "gitlab-rrt", ["GR1348941"], .base64url, 20...20, source: gitleaks + "gitlab-rrt",
            example: fake("GR1348941", 20, .base64url)),
        TokenFormat(
            "gitlab-runner-authentication-token", ["glrt-"], .base64url, 20...20,
            source: gitleaks + "gitlab-runner-authentication-token", example: fake("glrt-", 20, .base64url)),
        TokenFormat(
            "gitlab-runner-authentication-token-routable", ["glrt-"], base64urlDot, 40...313,
            source: gitleaks + "gitlab-runner-authentication-token-routable",
            example: "glrt-t1_" + fake("", 27, .base64url) + ".01" + fake("", 7, lowerDigits), infix: "."),
        TokenFormat(
            "gitlab-scim-token", ["glsoat-"], .base64url, 20...20, source: gitleaks + "gitlab-scim-token",
            example: fake("glsoat-", 20, .base64url)),
        // Slack.
        TokenFormat(
            "slack-bot-token", ["xoxb-"], .alnumDash, 21...255,
            source: gitleaks + "slack-bot-token and id=slack-legacy-bot-token",
            example: "xoxb-0000000000-0000000000-" + fake("", 24, .alnum)),
        TokenFormat(
            "slack-user-token", ["xoxp-", "xoxe-"], .alnumDash, 61...76, source: gitleaks + "slack-user-token",
            example: "xoxp-0000000000-0000000000-0000000000-" + fake("", 32, .alnum)),
        TokenFormat(
            "slack-config-access-token", ["xoxe.xoxb-", "xoxe.xoxp-"], .alnumDash, 165...168,
            source: gitleaks + "slack-config-access-token",
            example: "xoxe.xoxp-1-" + fake("", 163, upperDigits)),
        TokenFormat(
            "slack-config-refresh-token", ["xoxe-"], .alnumDash, 148...148,
            source: gitleaks + "slack-config-refresh-token", example: "xoxe-1-" + fake("", 146, upperDigits)),
        TokenFormat(
            "slack-legacy-token", ["xoxo-", "xoxs-"], .alnumDash, 7...255,
            source: gitleaks + "slack-legacy-token",
            example: "xoxs-0000000000-0000000000-0000000000-" + fake("", 64, .hex)),
        TokenFormat(
            "slack-legacy-workspace-token", ["xoxa-", "xoxr-"], .alnumDash, 8...50,
            source: gitleaks + "slack-legacy-workspace-token", example: "xoxa-2-" + fake("", 40, .alnum)),
        TokenFormat(
            "slack-app-token", ["xapp-"], .alnumDash, 7...255, source: gitleaks + "slack-app-token",
            example: "xapp-1-A0000000000-0000000000000-" + fake("", 64, lowerDigits)),
        TokenFormat(
            "slack-webhook-url",
            [
                "hooks.slack.com/services/", "hooks.slack.com/workflows/",
                "hooks.slack.com/triggers/",
            ], base64NoPad, 43...56,
            source: gitleaks + "slack-webhook-url",
            example: "hooks.slack.com/services/T00000000/B00000000/" + fake("", 24, .alnum)),
        // Cloud providers. AWS's A3T prefix carries one more body character (`A3T[A-Z0-9]`), hence 16...17.
        TokenFormat(
            "aws-access-token", ["AKIA", "ASIA", "ABIA", "ACCA", "A3T"], .upperAlnum, 16...17,
            source: gitleaks + "aws-access-token", example: "AKIAIOSFODNN7EXAMPLE"),
        TokenFormat(
            "gcp-api-key", ["AIza"], .base64url, 35...35, source: gitleaks + "gcp-api-key",
            example: fake("AIza", 35, .base64url)),
        // The upper bound is twice Nosey Parker's: Google's tokens have grown, and a longer one must not escape.
        TokenFormat(
            "google-oauth-access-token", ["ya29."], .base64url, 20...2048,
            source: noseyParker + "google.yml id=np-google-04 (also trufflehog googleoauth2)",
            example: fake("ya29.", 180, .base64url)),
        TokenFormat(
            "google-oauth-client-secret", ["GOCSPX-"], .base64url, 28...28,
            source: noseyParker + "google.yml id=np-google-02", example: fake("GOCSPX-", 28, .base64url)),
        TokenFormat(
            "azure-storage-account-key", ["AccountKey="], .base64, 88...1002,
            source: detectSecrets + "azure_storage_key.py AzureStorageKeyDetector (AccountKey= context)",
            example: "AccountKey=" + fake("", 86, base64NoPad) + "=="),
        TokenFormat(
            "digitalocean-pat", ["dop_v1_"], .hex, 64...64, source: gitleaks + "digitalocean-pat",
            example: fake("dop_v1_", 64, .hex)),
        TokenFormat(
            "digitalocean-access-token", ["doo_v1_"], .hex, 64...64,
            source: gitleaks + "digitalocean-access-token", example: fake("doo_v1_", 64, .hex)),
        TokenFormat(
            "digitalocean-refresh-token", ["dor_v1_"], .hex, 64...64,
            source: gitleaks + "digitalocean-refresh-token", example: fake("dor_v1_", 64, .hex)),
        TokenFormat(
            "alibaba-access-key-id", ["LTAI"], .alnum, 20...20, source: gitleaks + "alibaba-access-key-id",
            example: fake("LTAI", 20, .alnum)),
        TokenFormat(
            "heroku-api-key-v2", ["HRKU-AA"], .base64url, 58...58, source: gitleaks + "heroku-api-key-v2",
            example: fake("HRKU-AA", 58, .base64url)),
        TokenFormat(
            "databricks-api-token", ["dapi"], .hex, 32...32, source: gitleaks + "databricks-api-token",
            example: fake("dapi", 32, .hex)),
        TokenFormat(
            "openshift-user-token", ["sha256~"], .base64url, 43...43, source: gitleaks + "openshift-user-token",
            example: fake("sha256~", 43, .base64url)),
        TokenFormat(
            "vault-service-token", ["hvs."], .base64url, 90...120, source: gitleaks + "vault-service-token",
            example: fake("hvs.", 95, .base64url)),
        TokenFormat(
            "vault-batch-token", ["hvb."], .base64url, 138...300, source: gitleaks + "vault-batch-token",
            example: fake("hvb.", 140, .base64url)),
        // Payments and commerce.
        TokenFormat(
            "stripe-access-token", ["sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_"],
            .alnum, 10...99, source: gitleaks + "stripe-access-token", example: fake("sk_test_", 99, .alnum)),
        TokenFormat(
            "square-access-token", ["sq0atp-", "EAAA"], .base64url, 22...60,
            source: gitleaks + "square-access-token", example: fake("sq0atp-", 22, .base64url)),
        TokenFormat(
            "square-oauth-secret", ["sq0csp-"], .base64url, 43...43,
            source: detectSecrets + "square_oauth.py SquareOAuthDetector",
            example: fake("sq0csp-", 43, .base64url)),
        TokenFormat(
            "shopify-access-token", ["shpat_"], .hex, 32...32, source: gitleaks + "shopify-access-token",
            example: fake("shpat_", 32, .hex)),
        TokenFormat(
            "shopify-custom-access-token", ["shpca_"], .hex, 32...32,
            source: gitleaks + "shopify-custom-access-token", example: fake("shpca_", 32, .hex)),
        TokenFormat(
            "shopify-private-app-access-token", ["shppa_"], .hex, 32...32,
            source: gitleaks + "shopify-private-app-access-token", example: fake("shppa_", 32, .hex)),
        TokenFormat(
            "shopify-shared-secret", ["shpss_"], .hex, 32...32, source: gitleaks + "shopify-shared-secret",
            example: fake("shpss_", 32, .hex)),
        // gitleaks leaves this one unanchored; the boundary rule in `scan` anchors it.
        TokenFormat(
            "twilio-api-key", ["SK"], .hex, 32...32,
            source: gitleaks + "twilio-api-key; " + detectSecrets + "twilio.py TwilioKeyDetector",
            example: fake("SK", 32, .hex)),
        // Package registries.
        TokenFormat(
            "npm-access-token", ["npm_"], .alnum, 36...36, source: gitleaks + "npm-access-token",
            example: fake("npm_", 36, .alnum)),
        TokenFormat(
            "pypi-upload-token", ["pypi-AgEIcHlwaS5vcmc"], .base64url, 50...1000,
            source: gitleaks + "pypi-upload-token", example: fake("pypi-AgEIcHlwaS5vcmc", 64, .base64url)),
        TokenFormat(
            "rubygems-api-token", ["rubygems_"], .hex, 48...48, source: gitleaks + "rubygems-api-token",
            example: fake("rubygems_", 48, .hex)),
        TokenFormat(
            "pulumi-api-token", ["pul-"], .hex, 40...40, source: gitleaks + "pulumi-api-token",
            example: fake("pul-", 40, .hex)),
        // AI providers.
        TokenFormat(
            "openai-api-key", ["sk-proj-", "sk-svcacct-", "sk-admin-"], .base64url, 124...156,
            source: gitleaks + "openai-api-key",
            example: fake("sk-proj-", 74, .base64url) + "T3BlbkFJ" + fake("", 74, .base64url),
            infix: "T3BlbkFJ"),
        TokenFormat(
            "openai-api-key-legacy", ["sk-"], .alnum, 48...48,
            source: gitleaks + "openai-api-key (its sk-{20}T3BlbkFJ{20} branch)",
            example: fake("sk-", 20, .alnum) + "T3BlbkFJ" + fake("", 20, .alnum), infix: "T3BlbkFJ"),
        TokenFormat(
            "anthropic-api-key", ["sk-ant-api03-"], .base64url, 95...95, source: gitleaks + "anthropic-api-key",
            example: fake("sk-ant-api03-", 93, .base64url) + "AA"),
        TokenFormat(
            "anthropic-admin-api-key", ["sk-ant-admin01-"], .base64url, 95...95,
            source: gitleaks + "anthropic-admin-api-key",
            example: fake("sk-ant-admin01-", 93, .base64url) + "AA"),
        TokenFormat(
            "huggingface-access-token", ["hf_"], .letters, 34...34,
            source: gitleaks + "huggingface-access-token",
            example: fake("hf_", 34, .letters)),
        TokenFormat(
            "huggingface-organization-api-token", ["api_org_"], .letters, 34...34,
            source: gitleaks + "huggingface-organization-api-token", example: fake("api_org_", 34, .letters)),
        TokenFormat(
            "perplexity-api-key", ["pplx-"], .alnum, 48...48, source: gitleaks + "perplexity-api-key",
            example: fake("pplx-", 48, .alnum)),
        // Developer services.
        TokenFormat(
            "sendgrid-api-token", ["SG."], base64urlDotEquals, 66...66, source: gitleaks + "sendgrid-api-token",
            example: fake("SG.", 22, .base64url) + "." + fake("", 43, .base64url)),
        TokenFormat(
            "atlassian-api-token", ["ATATT3"], base64urlEquals, 186...186,
            source: gitleaks + "atlassian-api-token (its ATATT3 branch)",
            example: fake("ATATT3", 186, .base64url)),
        TokenFormat(
            "linear-api-key", ["lin_api_"], .alnum, 40...40, source: gitleaks + "linear-api-key",
            example: fake("lin_api_", 40, .alnum)),
        TokenFormat(
            "doppler-api-token", ["dp.pt."], .alnum, 43...43, source: gitleaks + "doppler-api-token",
            example: fake("dp.pt.", 43, .alnum)),
        TokenFormat(
            "sentry-user-token", ["sntryu_"], .hex, 64...64, source: gitleaks + "sentry-user-token",
            example: fake("sntryu_", 64, .hex)),
        TokenFormat(
            "grafana-service-account-token", ["glsa_"], .alnumUnderscore, 41...41,
            source: gitleaks + "grafana-service-account-token",
            example: fake("glsa_", 32, .alnum) + "_" + fake("", 8, .hex)),
        TokenFormat(
            "postman-api-token", ["PMAK-"], .alnumDash, 59...59, source: gitleaks + "postman-api-token",
            example: fake("PMAK-", 24, .hex) + "-" + fake("", 34, .hex)),
        TokenFormat(
            "1password-service-account-token", ["ops_eyJ"], .base64, 250...8192,
            source: gitleaks + "1password-service-account-token", example: fake("ops_eyJ", 260, base64NoPad)),
        TokenFormat(
            "age-secret-key", ["AGE-SECRET-KEY-1"], .upperAlnum, 58...58, source: gitleaks + "age-secret-key",
            example: fake("AGE-SECRET-KEY-1", 58, upperDigits)),
        // gitleaks' `-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----` through `KEY(?: BLOCK)?-----`. The body
        // bound is ours: an 8192-bit RSA key in PEM is about 6.4 KB.
        TokenFormat(
            "private-key", ["-----BEGIN"], pemBody, 1...16384,
            source: gitleaks + "private-key; " + detectSecrets + "private_key.py PrivateKeyDetector",
            example: "-----BEGIN PRIVATE KEY-----\n" + fake("", 64, base64NoPad) + "\n"
                + fake("", 40, base64NoPad) + "==\n-----END PRIVATE KEY-----", isPEMBlock: true),
    ]

    static let lowerDigits = ByteClass(ByteClass.lowerLetters + ByteClass.digitChars)
    static let upperDigits = ByteClass.upperAlnum
    static let base64NoPad = ByteClass.alnum.union(ByteClass("+/"))
    static let base64urlDot = ByteClass.base64url.union(ByteClass("."))
    static let base64urlEquals = ByteClass.base64url.union(ByteClass("="))
    static let base64urlDotEquals = base64urlDot.union(ByteClass("="))
    /// What may sit between a PEM header and where its END line should be, when there is no END line: base64,
    /// line breaks (raw or JSON-escaped) and RFC 1421 headers such as `Proc-Type: 4,ENCRYPTED`.
    static let pemBody = ByteClass.base64.union(ByteClass("\r\n\t \\:,-"))

    /// A fake body that is readable as fake: the letters of "authtap fake example", digits, then the rest of the
    /// class, repeated, keeping only bytes the class allows.
    static func fake(_ prefix: String, _ length: Int, _ body: ByteClass) -> String {
        let pool = Array("AuthtapFakeExample0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ".utf8)
            .filter { body.contains($0) }
        var out = Array(prefix.utf8)
        for i in 0..<length { out.append(pool[i % pool.count]) }
        return String(decoding: out, as: UTF8.self)
    }
}
