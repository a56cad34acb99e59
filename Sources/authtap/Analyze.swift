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
    @Option(help: "The capture database.")
    var db: String = "Captures/authtap.sqlite"
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

    func run() throws {
        let database = try openExisting(db)
        let ids = try database.sessionIDs()
        let targets: [Int64]
        if all { targets = ids } else if let session {
            guard ids.contains(session) else { throw ValidationError("no session \(session) in \(db) (sessions: \(ids.map(String.init).joined(separator: ", ")))") }
            targets = [session]
        } else {
            guard let last = ids.last else { throw ValidationError("no sessions in \(db)") }
            targets = [last]
        }
        let analyzer = Analyzer(caPath: absolute(certs + "/authtap-ca.pem"))
        var reports: [(Int64, Analysis, [Int64: Exchange])] = []
        let timing = ProcessInfo.processInfo.environment["AUTHTAP_TIMING"] != nil
        func lap(_ label: String, _ start: Date) {
            if timing { FileHandle.standardError.write(Data(String(format: "%@: %.3f s\n", label, Date().timeIntervalSince(start)).utf8)) }
        }
        for id in targets {
            var t = Date()
            let exchanges = try database.exchanges(session: id, analyzable: true)
            lap("load \(exchanges.count)", t); t = Date()
            let handshakes = try database.handshakes(session: id).map(\.record)
            let analysis = analyzer.analyze(exchanges, handshakes: handshakes, proxyPort: try database.proxyPort(session: id))
            lap("analyze", t); t = Date()
            try database.save(analysis: analysis, session: id)
            lap("save", t)
            reports.append((id, analysis, Dictionary(exchanges.map { ($0.id ?? 0, $0) }, uniquingKeysWith: { a, _ in a })))
        }
        switch format {
        case .json:
            if reports.count == 1 {
                try printJSON(AnalysisJSON(reports[0].1))
            } else {
                try printJSON(reports.map { SessionAnalysisJSON(session: $0.0, analysis: AnalysisJSON($0.1)) })
            }
        case .text:
            for (id, analysis, exchanges) in reports {
                print(Report.text(session: id, analysis: analysis, exchanges: exchanges))
            }
        }
        let worst = reports.flatMap { $0.1.findings.map(\.severity) }.max()
        let threshold: Severity? = failOn == .never ? nil : failOn == .error ? .error : .warning
        if let threshold, let worst, worst >= threshold { throw ExitCode(1) }
    }
}

struct Rules: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the analyzer's rules.")
    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text
    @Flag(help: "Also list the provider error dialects the rules understand, with their sources.")
    var providers = false

    func run() throws {
        switch format {
        case .json:
            struct R: Encodable { var id, severity, title, checks: String }
            try printJSON(RuleCatalog.rules.map { R(id: $0.id, severity: $0.severity.rawValue, title: $0.title, checks: $0.checks) })
        case .text:
            for r in RuleCatalog.rules {
                print("\(r.id.padding(toLength: 24, withPad: " ", startingAt: 0)) \(r.severity.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(r.title)")
                print("    \(r.checks)")
            }
            if providers {
                print("\nProvider dialects (first match wins):")
                for e in ProviderErrors.table {
                    let match: String
                    switch e.match {
                    case .code(let c): match = "error=\(c)"
                    case .description(let d): match = "\"\(d)\""
                    case .number(let n): match = "code \(n)"
                    }
                    print("  \(e.provider): \(match) → \(e.errorClass.rawValue)  (\(e.source))")
                }
            }
        }
    }
}

/// JSON shape of `authtap analyze --format json`.
struct AnalysisJSON: Encodable {
    struct T: Encodable {
        var id: Int
        var client_id: String?
        var server_host: String?
        var grant_type: String?
        var state: String?
        var started_at: String
        var outcome: String
        var exchanges: [M]
    }
    struct M: Encodable { var id: Int64; var leg: String }
    struct F: Encodable {
        var rule, severity, title, explanation, fix: String
        var exchanges: [Int64]
        var transaction: Int?
        var evidence: [String: String]
    }
    var transactions: [T]
    var findings: [F]
    init(_ a: Analysis) {
        transactions = a.transactions.map {
            T(id: $0.index, client_id: $0.clientID, server_host: $0.serverHost, grant_type: $0.grantType, state: $0.state,
              started_at: iso($0.startedAt), outcome: $0.outcome, exchanges: $0.members.map { M(id: $0.exchange, leg: $0.leg.rawValue) })
        }
        findings = a.findings.map {
            F(rule: $0.rule, severity: $0.severity.rawValue, title: $0.title, explanation: $0.explanation, fix: $0.fix,
              exchanges: $0.exchanges, transaction: $0.transaction, evidence: $0.evidence)
        }
    }
}

struct SessionAnalysisJSON: Encodable {
    var session: Int64
    var analysis: AnalysisJSON
}

/// The text report: per transaction a compact timeline, then its findings; then findings outside transactions.
enum Report {
    static func text(session: Int64, analysis: Analysis, exchanges: [Int64: Exchange]) -> String {
        var out = ""
        let counts = Dictionary(grouping: analysis.findings, by: \.severity).mapValues(\.count)
        out += "Session \(session): \(analysis.transactions.count) transactions, \(counts[.error] ?? 0) errors, \(counts[.warning] ?? 0) warnings, \(counts[.info] ?? 0) info\n"
        for t in analysis.transactions {
            out += "\nTransaction \(t.index)  client_id=\(safe(t.clientID ?? "?"))  server=\(safe(t.serverHost ?? "?"))  "
                + "\(safe(t.grantType ?? ""))  → \(safe(t.outcome))\n"
            let start = t.startedAt
            for m in t.members {
                guard let e = exchanges[m.exchange] else { continue }
                let offset = e.timings.start.timeIntervalSince(start)
                let status = e.status.map(String.init) ?? (e.error?.rawValue ?? "---")
                let hostPort = safe(e.host) + ((e.scheme == .https && e.port == 443) || (e.scheme == .http && e.port == 80) ? "" : ":\(e.port)")
                let path = safe(String(e.target.prefix { $0 != "?" && $0 != "#" }))
                let id = "#\(m.exchange)".padding(toLength: 7, withPad: " ", startingAt: 0)
                out += String(format: "  +%8.3fs  ", offset) + id + " " + m.leg.rawValue.padding(toLength: 23, withPad: " ", startingAt: 0)
                    + " " + safe(e.method) + " " + hostPort + path + "  " + status + "\n"
            }
            for f in analysis.findings where f.transaction == t.index { out += finding(f) }
        }
        let loose = analysis.findings.filter { $0.transaction == nil }
        if !loose.isEmpty {
            out += "\nOutside any transaction\n"
            for f in loose { out += finding(f) }
        }
        if analysis.findings.isEmpty { out += "\nNo findings.\n" }
        return out
    }

    static func finding(_ f: Finding) -> String {
        let ids = f.exchanges.map { "#\($0)" }.joined(separator: ", ")
        var s = "  [\(f.severity.rawValue.uppercased())] \(safe(f.rule)): \(safe(f.title))  (exchanges \(ids))\n"
        s += "    Why: \(safe(f.explanation))\n"
        for (k, v) in f.evidence.sorted(by: { $0.key < $1.key }) { s += "    \(safe(k)): \(safe(v))\n" }
        s += "    Fix: \(safe(f.fix))\n"
        return s
    }

    /// One line for a live finding on the proxy's console.
    static func line(_ f: Finding) -> String {
        let ids = f.exchanges.map { "#\($0)" }.joined(separator: ", ")
        return "FINDING [\(f.severity.rawValue)] \(safe(f.rule)): \(safe(f.title)) (exchanges \(ids))\n  fix: \(safe(f.fix))"
    }

    /// Titles, explanations and evidence quote what servers sent (error_description, headers, claims):
    /// printed with their control characters escaped.
    static func safe(_ s: String) -> String { TerminalText.escape(s) }
}

/// Live analysis while the proxy runs: keeps the OAuth-relevant exchanges of the session in memory
/// (bounded), re-analyzes at most every 300 ms off the event loops, and prints each finding once.
final class LiveFindings: @unchecked Sendable {
    private let lock = NSLock()
    private var window: [Exchange] = []
    private var printed = Set<String>()
    private var scheduled = false
    private let queue = DispatchQueue(label: "authtap.live-analysis")
    private let analyzer: Analyzer
    private let limit = 5000
    /// Rules whose evidence is only complete when the session ends.
    private let atEndOnly: Set<String> = ["missing-leg"]

    init(analyzer: Analyzer) {
        self.analyzer = analyzer
    }

    func add(_ batch: [Exchange]) {
        let relevant = batch.filter { !$0.roles.isEmpty || $0.error != nil }
        guard !relevant.isEmpty else { return }
        lock.lock()
        window += relevant
        if window.count > limit { window.removeFirst(window.count - limit) }
        let schedule = !scheduled
        scheduled = true
        lock.unlock()
        if schedule {
            queue.asyncAfter(deadline: .now() + .milliseconds(300)) { [self] in run() }
        }
    }

    private func run() {
        lock.lock()
        let snapshot = window
        scheduled = false
        lock.unlock()
        let analysis = analyzer.analyze(snapshot)
        var out = ""
        for f in analysis.findings where !atEndOnly.contains(f.rule) {
            let key = "\(f.rule)|\(f.title)|\(f.exchanges.first ?? 0)"
            if printed.insert(key).inserted { out += Report.line(f) + "\n" }
        }
        if !out.isEmpty { FileHandle.standardOutput.write(Data(out.utf8)) }
    }

    /// Waits for a pending run.
    func drain() { queue.sync {} }
}
