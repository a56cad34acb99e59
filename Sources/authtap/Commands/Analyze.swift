import ArgumentParser
import AuthtapAnalyzer
import AuthtapModel
import AuthtapStore
import Foundation

enum FailOn: String, ExpressibleByArgument, CaseIterable {
    case error, warning, never
}

struct Analyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild OAuth transactions and explain every failure (stored in the database).",
        discussion: "Exit status 1 when a finding is at or above --fail-on, so it can gate CI.")
    @OptionGroup var db: DatabaseOption
    @Option(help: "Analyze this session (default: the latest).")
    var session: Int64?
    @Flag(help: "Analyze every session.")
    var all = false
    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text
    @Option(help: "Exit 1 when a finding is at least this severe: error, warning or never.")
    var failOn: FailOn = .error
    @Option(help: "Directory of the authtap CA (its path appears in the fixes for TLS faults).")
    var certs: String = "certs"

    func validate() throws {
        if all && session != nil { throw ValidationError("use either --session N or --all") }
    }

    /// One analyzed session: its id, the analysis, and its exchanges by id for the text report.
    private struct SessionReport {
        var session: Int64
        var analysis: Analysis
        var exchanges: [Int64: Exchange]
    }

    func run() throws {
        let database = try openExisting(db.path)
        let targets = try targetSessions(database)
        let analyzer = Analyzer(caPath: absolute(certs + "/authtap-ca.pem"))
        var reports: [SessionReport] = []
        let timing = ProcessInfo.processInfo.environment["AUTHTAP_TIMING"] != nil
        func lap(_ label: String, _ start: Date) {
            guard timing else { return }
            let line = String(format: "%@: %.3f s\n", label, Date().timeIntervalSince(start))
            FileHandle.standardError.write(Data(line.utf8))
        }
        for id in targets {
            var t = Date()
            let exchanges = try database.exchanges(session: id, analyzable: true)
            lap("load \(exchanges.count)", t)
            t = Date()
            let handshakes = try database.handshakes(session: id).map(\.record)
            let analysis = analyzer.analyze(
                exchanges, handshakes: handshakes, proxyPort: try database.proxyPort(session: id))
            lap("analyze", t)
            t = Date()
            try database.save(analysis: analysis, session: id)
            lap("save", t)
            let byID = Dictionary(exchanges.map { ($0.id ?? 0, $0) }, uniquingKeysWith: { a, _ in a })
            reports.append(SessionReport(session: id, analysis: analysis, exchanges: byID))
        }
        switch format {
        case .json:
            if reports.count == 1 {
                try printJSON(AnalysisJSON(reports[0].analysis))
            } else {
                try printJSON(
                    reports.map { SessionAnalysisJSON(session: $0.session, analysis: AnalysisJSON($0.analysis)) })
            }
        case .text:
            for r in reports {
                print(Report.text(session: r.session, analysis: r.analysis, exchanges: r.exchanges))
            }
        }
        let worst = reports.flatMap { $0.analysis.findings.map(\.severity) }.max()
        let threshold: Severity? = failOn == .never ? nil : failOn == .error ? .error : .warning
        if let threshold, let worst, worst >= threshold { throw ExitCode(1) }
    }

    /// --all, --session N (which must exist) or the latest session.
    private func targetSessions(_ database: AppDatabase) throws -> [Int64] {
        let ids = try database.sessionIDs()
        if all { return ids }
        if let session {
            guard ids.contains(session) else {
                let known = ids.map(String.init).joined(separator: ", ")
                throw ValidationError("no session \(session) in \(db.path) (sessions: \(known))")
            }
            return [session]
        }
        guard let last = ids.last else { throw ValidationError("no sessions in \(db.path)") }
        return [last]
    }
}
