import AuthtapAnalyzer
import AuthtapModel
import Foundation

/// The JSON shape of `authtap analyze --format json` for one session. Keys are snake_case, and the encoder sorts
/// them; a nil optional is left out.
struct AnalysisJSON: Encodable {
    var transactions: [TransactionJSON]
    var findings: [FindingJSON]

    struct TransactionJSON: Encodable {
        var id: Int
        var clientID: String?
        var serverHost: String?
        var grantType: String?
        var state: String?
        var startedAt: String
        var outcome: String
        var exchanges: [MemberJSON]

        enum CodingKeys: String, CodingKey {
            case id, state, outcome, exchanges
            case clientID = "client_id", serverHost = "server_host", grantType = "grant_type"
            case startedAt = "started_at"
        }
    }

    /// An exchange of a transaction and the leg it plays.
    struct MemberJSON: Encodable {
        var id: Int64
        var leg: String
    }

    struct FindingJSON: Encodable {
        var rule, severity, title, explanation, fix: String
        var exchanges: [Int64]
        var transaction: Int?
        var evidence: [String: String]
        /// True on the root cause of a failure; absent on findings that are not part of one.
        var rootCause: Bool?
        /// The generic rules whose findings about the same response this root explains.
        var related: [String]?
        var candidates: [Finding.Candidate]?

        enum CodingKeys: String, CodingKey {
            case rule, severity, title, explanation, fix, exchanges, transaction, evidence, related, candidates
            case rootCause = "root_cause"
        }
    }

    init(_ a: Analysis) {
        transactions = a.transactions.map { t in
            TransactionJSON(
                id: t.index, clientID: t.clientID, serverHost: t.serverHost, grantType: t.grantType, state: t.state,
                startedAt: iso(t.startedAt), outcome: t.outcome,
                exchanges: t.members.map { MemberJSON(id: $0.exchange, leg: $0.leg.rawValue) })
        }
        findings = a.findings.map { f in
            FindingJSON(
                rule: f.rule.rawValue, severity: f.severity.rawValue, title: f.title, explanation: f.explanation,
                fix: f.fix, exchanges: f.exchanges, transaction: f.transaction, evidence: f.evidence,
                rootCause: f.rootCause, related: f.related?.map(\.rawValue), candidates: f.candidates)
        }
    }
}

/// `authtap analyze --all --format json`: one analysis per session.
struct SessionAnalysisJSON: Encodable {
    var session: Int64
    var analysis: AnalysisJSON
}

/// The text report: per transaction a compact timeline, then its findings; then findings outside transactions.
enum Report {
    static func text(session: Int64, analysis: Analysis, exchanges: [Int64: Exchange]) -> String {
        var out = ""
        let counts = Dictionary(grouping: analysis.findings, by: \.severity).mapValues(\.count)
        out +=
            "Session \(session): \(analysis.transactions.count) transactions, \(counts[.error] ?? 0) errors, "
            + "\(counts[.warning] ?? 0) warnings, \(counts[.info] ?? 0) info\n"
        for t in analysis.transactions {
            out +=
                "\nTransaction \(t.index)  client_id=\(safe(t.clientID ?? "?"))  "
                + "server=\(safe(t.serverHost ?? "?"))  \(safe(t.grantType ?? ""))  → \(safe(t.outcome))\n"
            for m in t.members {
                guard let e = exchanges[m.exchange] else { continue }
                out += timelineRow(m, e, start: t.startedAt)
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

    /// One exchange of a transaction: its offset from the start, id, leg, method, host and path, and status.
    static func timelineRow(_ m: Transaction.Member, _ e: Exchange, start: Date) -> String {
        let offset = e.timings.start.timeIntervalSince(start)
        let status = e.status.map(String.init) ?? (e.error?.rawValue ?? "---")
        let defaultPort = (e.scheme == .https && e.port == 443) || (e.scheme == .http && e.port == 80)
        let hostPort = safe(e.host) + (defaultPort ? "" : ":\(e.port)")
        let path = safe(String(e.target.prefix { $0 != "?" && $0 != "#" }))
        let id = "#\(m.exchange)".padding(toLength: 7, withPad: " ", startingAt: 0)
        let leg = m.leg.rawValue.padding(toLength: 23, withPad: " ", startingAt: 0)
        return String(format: "  +%8.3fs  ", offset) + id + " " + leg + " " + safe(e.method) + " " + hostPort + path
            + "  " + status + "\n"
    }

    static func finding(_ f: Finding) -> String {
        let ids = f.exchanges.map { "#\($0)" }.joined(separator: ", ")
        var s =
            "  [\(f.severity.rawValue.uppercased())] \(safe(f.rule.rawValue)): \(safe(f.title))"
            + "  (exchanges \(ids))\(f.rootCause == true ? "  ROOT CAUSE" : "")\n"
        s += "    Why: \(safe(f.explanation))\n"
        for (k, v) in f.evidence.sorted(by: { $0.key < $1.key }) where k != "candidates" {
            s += "    \(safe(k)): \(safe(v))\n"
        }
        for c in f.candidates ?? [] {
            s += "    candidate \(safe(c.cause)): \(c.status.rawValue) (\(safe(c.evidence)))\n"
        }
        if let related = f.related, !related.isEmpty {
            s += "    Explains: \(related.map { safe($0.rawValue) }.joined(separator: ", "))\n"
        }
        s += "    Fix: \(safe(f.fix))\n"
        return s
    }

    /// One line for a live finding on the proxy's console.
    static func line(_ f: Finding) -> String {
        let ids = f.exchanges.map { "#\($0)" }.joined(separator: ", ")
        return "FINDING [\(f.severity.rawValue)] \(safe(f.rule.rawValue)): \(safe(f.title)) (exchanges \(ids))\n"
            + "  fix: \(safe(f.fix))"
    }

    /// Titles, explanations and evidence quote what servers sent (error_description, headers, claims):
    /// printed with their control characters escaped.
    static func safe(_ s: String) -> String { TerminalText.escape(s) }
}
