import ArgumentParser
import AuthtapModel
import AuthtapStore
import Foundation

struct Exchanges: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List recorded exchanges (already masked).")
    @OptionGroup var db: DatabaseOption
    @Option(help: "Only this session.")
    var session: Int64?
    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text
    @Flag(help: "Also list CONNECT tunnels.")
    var tunnels = false
    @Option(help: "At most this many exchanges (the first ones).")
    var limit: Int?

    func run() throws {
        let database = try openExisting(db.path)
        let exchanges = try database.exchanges(session: session, limit: limit)
        switch format {
        case .json:
            if tunnels {
                try printJSON(
                    ExchangeDump(
                        exchanges: exchanges.map(ExchangeView.init), tunnels: try database.tunnels(session: session)))
            } else {
                try printJSON(exchanges.map(ExchangeView.init))
            }
        case .text:
            for e in exchanges { print(ConsoleLine.format(e)) }
            if tunnels {
                for t in try database.tunnels(session: session) { print(TunnelLine.format(t)) }
            }
        }
    }
}
