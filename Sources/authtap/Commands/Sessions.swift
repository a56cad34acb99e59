import ArgumentParser
import AuthtapStore
import Foundation

struct Sessions: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List recorded sessions (proxy runs and captures) with their findings.")
    @OptionGroup var db: DatabaseOption
    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() throws {
        let database = try openExisting(db.path)
        let sessions = try database.sessions()
        let counts = try database.analysisCounts()
        switch format {
        case .json:
            try printJSON(sessions)
        case .text:
            if sessions.isEmpty { print("no sessions in \(db.path)") }
            for s in sessions { print(SessionLine.format(s, counts: counts[s.id ?? 0])) }
        }
    }
}
