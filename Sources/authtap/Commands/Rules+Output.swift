import AuthtapAnalyzer
import Foundation

/// One rule in `authtap rules --format json`.
struct RuleJSON: Encodable {
    var id, severity, title, checks: String

    init(_ r: any Rule) {
        id = "\(r.id)"
        severity = r.severity.rawValue
        title = r.title
        checks = r.checks
    }
}

/// `authtap rules` as text: a rule per two lines, then the provider dialects with --providers.
enum RulesText {
    static func rule(_ r: any Rule) -> String {
        let id = "\(r.id)".padding(toLength: 24, withPad: " ", startingAt: 0)
        let severity = r.severity.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
        return "\(id) \(severity) \(r.title)\n    \(r.checks)"
    }

    static func dialect(_ e: ProviderErrorEntry) -> String {
        let match: String
        switch e.match {
        case .code(let c): match = "error=\(c)"
        case .phrase(let d): match = "\"\(d)\""
        case .number(let n): match = "code \(n)"
        }
        return "  \(e.provider): \(match) → \(e.errorClass.rawValue)  (\(e.source))"
    }
}
