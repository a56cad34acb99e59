import ArgumentParser
import AuthtapModel
import AuthtapStore
import Foundation

struct Handshakes: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List captured TLS handshake records.")
    @OptionGroup var db: DatabaseOption
    @Option(help: "Only this session.")
    var session: Int64?
    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() throws {
        let database = try openExisting(db.path)
        let rows = try database.handshakes(session: session)
        switch format {
        case .json:
            try printJSON(rows.map { HandshakeRowJSON(id: $0.id, session: $0.session, record: $0.record) })
        case .text:
            for r in rows {
                print("#\(r.id) " + HandshakeLine.format(r.record) + "  — \(TerminalText.escape(r.record.detail))")
            }
        }
    }
}

/// One record in `authtap handshakes --format json`: the stored row's ids around the record.
struct HandshakeRowJSON: Encodable {
    var id: Int64
    var session: Int64
    var record: HandshakeRecord
}
