import ArgumentParser
import AuthtapAnalyzer
import AuthtapDissector
import AuthtapHAR
import AuthtapModel
import AuthtapStore
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a session, a transaction or everything as HAR 1.2 (masked: safe to attach to a ticket).")
    @OptionGroup var db: DatabaseOption
    @Option(help: "Export this session.")
    var session: Int64?
    @Option(help: "Export one transaction, as SESSION:NUMBER (or NUMBER in the latest session).")
    var transaction: String?
    @Flag(help: "Export every session.")
    var all = false
    @Option(help: "Output format (har).")
    var format: String = "har"
    @Option(name: .shortAndLong, help: "Output file; - writes to stdout.")
    var output: String

    func validate() throws {
        if [session != nil, transaction != nil, all].filter({ $0 }).count != 1 {
            throw ValidationError("give exactly one of --session N, --transaction ID or --all")
        }
        if format != "har" { throw ValidationError("--format: only har is supported") }
    }

    func run() throws {
        let database = try openExisting(db.path)
        let ids = try database.sessionIDs()
        var exchanges: [Exchange] = []
        var analysis = Analysis(transactions: [], findings: [])
        var handshakes: [HandshakeRecord] = []
        if all {
            for id in ids { try collect(database, id, &exchanges, &analysis, &handshakes) }
        } else if let session {
            guard ids.contains(session) else { throw ValidationError("no session \(session) in \(db.path)") }
            try collect(database, session, &exchanges, &analysis, &handshakes)
        } else if let transaction {
            let parts = transaction.split(separator: ":")
            guard let number = Int(parts.last ?? ""), let sessionID = parts.count == 2 ? Int64(parts[0]) : ids.last
            else {
                throw ValidationError("--transaction takes SESSION:NUMBER or NUMBER")
            }
            guard
                let context = HARExport.transaction(
                    number, of: try database.analysis(session: sessionID),
                    exchanges: try database.exchanges(session: sessionID), creatorVersion: authtapVersion)
            else {
                throw ValidationError(
                    "no transaction \(number) in session \(sessionID) "
                        + "(run `authtap analyze --session \(sessionID)` first)")
            }
            exchanges = context.exchanges
            analysis = context.analysis
        }
        let data = try HARExport.data(
            .init(exchanges: exchanges, analysis: analysis, handshakes: handshakes, creatorVersion: authtapVersion))
        if output == "-" {
            // The same document, with C1 and bidi characters as \u escapes: stdout may be a terminal.
            let text = TerminalText.escapeJSON(String(decoding: data, as: UTF8.self))
            FileHandle.standardOutput.write(Data((text + "\n").utf8))
        } else {
            try Self.writeOwnerOnly(data, to: output)
            let summary =
                "authtap: wrote \(exchanges.count) entries, \(analysis.findings.count) findings "
                + "to \(output)\n"
            FileHandle.standardError.write(Data(summary.utf8))
        }
    }

    /// A HAR is masked, yet it still maps the user's sign-ins (hosts, paths, client_ids, timings): created 0600,
    /// and an existing file is truncated and tightened.
    static func writeOwnerOnly(_ data: Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ValidationError("cannot write \(path): \(String(cString: strerror(errno)))") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        fchmod(fd, 0o600)
        try handle.write(contentsOf: data)
        try handle.close()
    }

    private func collect(
        _ db: AppDatabase, _ id: Int64, _ exchanges: inout [Exchange], _ analysis: inout Analysis,
        _ handshakes: inout [HandshakeRecord]
    ) throws {
        exchanges += try db.exchanges(session: id)
        let stored = try db.analysis(session: id)
        // Transactions are numbered per session: keep them apart when several sessions are exported.
        let offset = analysis.transactions.count
        analysis.transactions += stored.transactions.map {
            var t = $0; t.index += offset; return t
        }
        analysis.findings += stored.findings.map {
            var f = $0
            f.transaction = f.transaction.map { $0 + offset }
            return f
        }
        handshakes += try db.handshakes(session: id).map(\.record)
    }
}
