import ArgumentParser
import AuthtapAnalyzer
import Foundation

struct Rules: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the analyzer's rules.")
    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text
    @Flag(help: "Also list the provider error dialects the rules understand, with their sources.")
    var providers = false

    func run() throws {
        switch format {
        case .json:
            try printJSON(AuthtapAnalyzer.Rules.all.map(RuleJSON.init))
        case .text:
            for r in AuthtapAnalyzer.Rules.all { print(RulesText.rule(r)) }
            if providers {
                print("\nProvider dialects (first match wins):")
                for e in ProviderErrors.table { print(RulesText.dialect(e)) }
            }
        }
    }
}
