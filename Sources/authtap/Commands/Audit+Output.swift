import AuthtapOAuth
import Foundation

/// `authtap audit --rules`: the secret-detection tables recording and audit share, with their sources.
struct AuditRulesJSON: Encodable {
    /// A family of secret parameter names, matched in any casing or nesting.
    struct NameFamily: Encodable {
        var family, source: String
        var examples: [String]
    }

    /// A published token format, recognised by its prefixes.
    struct TokenFormat: Encodable {
        var id, source, example: String
        var prefixes: [String]
    }

    var names: [NameFamily]
    var tokenFormats: [TokenFormat]

    init() {
        names = SecretFamily.all.map { NameFamily(family: $0.id, source: $0.source, examples: $0.examples) }
        tokenFormats = TokenFormats.all.map {
            TokenFormat(id: $0.id, source: $0.source, example: $0.example, prefixes: $0.prefixes)
        }
    }
}
