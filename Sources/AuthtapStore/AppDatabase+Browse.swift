import AuthtapModel
import Foundation
import GRDB

/// Paged, filtered reads for the terminal UI. Filters become SQL (with indexes); a screen never
/// loads a whole table.
public struct BrowseFilter: Sendable, Equatable {
    public var words: [String] = []
    /// `exact`, a class (4 → 4xx), or `none` (no status: a failure).
    public var statusExact: Int?
    public var statusClass: Int?
    public var statusNone = false
    public var host: String?
    public var role: String?
    public var rule: String?
    public var severity: String?
    public var error: String?
    public init() {}
}

public struct ExchangeRow: Sendable, Equatable {
    public var id: Int64
    public var startedAt: Date
    public var method: String
    public var host: String
    public var port: Int
    public var target: String
    public var status: Int?
    public var durationMs: Double?
    public var roles: [String]
    public var error: String?
    public var tlsFailure: String?
    /// Finding rules on this exchange, with their severities.
    public var findings: [(rule: String, severity: String)]

    public static func == (a: ExchangeRow, b: ExchangeRow) -> Bool { a.id == b.id && a.findings.count == b.findings.count }
}

public struct SessionRow: Sendable {
    public var id: Int64
    public var startedAt: Date
    public var endedAt: Date?
    public var exchanges: Int
    public var transactions: Int
    public var errors: Int
    public var warnings: Int
    public var info: Int
    public var handshakes: Int
    public var arguments: String
}

public struct TransactionRow: Sendable {
    public var number: Int
    public var rowID: Int64
    public var clientID: String?
    public var serverHost: String?
    public var grantType: String?
    public var outcome: String
    public var startedAt: Date
    public var findings: [(rule: String, severity: String)]
}

public struct FindingRow: Sendable {
    public var id: Int64
    public var rule: String
    public var severity: String
    public var title: String
    public var explanation: String
    public var fix: String
    public var evidence: [String: String]
    public var exchanges: [Int64]
    public var transaction: Int?
}

extension AppDatabase {
    static func conditions(_ f: BrowseFilter, session: Int64) -> (String, StatementArguments) {
        var sql = ["e.session_id = ?"]
        var args: StatementArguments = [session]
        for w in f.words {
            sql.append("(e.host LIKE ? OR e.target LIKE ? OR e.method LIKE ? OR e.oauth_roles LIKE ?)")
            let like = "%\(w)%"
            args += [like, like, like, like]
        }
        if let s = f.statusExact { sql.append("e.status = ?"); args += [s] }
        if let c = f.statusClass { sql.append("e.status BETWEEN ? AND ?"); args += [c * 100, c * 100 + 99] }
        if f.statusNone { sql.append("(e.status IS NULL OR e.error_kind IS NOT NULL)") }
        if let h = f.host { sql.append("e.host LIKE ?"); args += ["%\(h)%"] }
        if let r = f.role { sql.append("(',' || e.oauth_roles) LIKE ?"); args += ["%,\(r)%"] }
        if let e = f.error { sql.append("(e.error_kind LIKE ? OR e.tls_failure LIKE ?)"); args += ["%\(e)%", "%\(e)%"] }
        if f.rule != nil || f.severity != nil {
            var sub = "EXISTS (SELECT 1 FROM finding_exchange fe JOIN finding fi ON fi.id = fe.finding_id WHERE fe.exchange_id = e.id"
            if let r = f.rule { sub += " AND fi.rule = ?"; args += [r] }
            if let s = f.severity { sub += " AND fi.severity = ?"; args += [s] }
            sql.append(sub + ")")
        }
        return (sql.joined(separator: " AND "), args)
    }

    public func browseSessions() throws -> [SessionRow] {
        try writer.read { db in
            try Row.fetchAll(db, sql: """
                SELECT s.id, s.started_at, s.ended_at, s.arguments,
                  (SELECT COUNT(*) FROM exchange WHERE session_id = s.id),
                  (SELECT COUNT(*) FROM oauth_transaction WHERE session_id = s.id),
                  (SELECT COUNT(*) FROM finding WHERE session_id = s.id AND severity = 'error'),
                  (SELECT COUNT(*) FROM finding WHERE session_id = s.id AND severity = 'warning'),
                  (SELECT COUNT(*) FROM finding WHERE session_id = s.id AND severity = 'info'),
                  (SELECT COUNT(*) FROM handshake WHERE session_id = s.id)
                FROM session s ORDER BY s.id DESC
                """).map { r in
                SessionRow(id: r[0], startedAt: Date(timeIntervalSince1970: r[1]), endedAt: (r[2] as Double?).map(Date.init(timeIntervalSince1970:)),
                           exchanges: r[4], transactions: r[5], errors: r[6], warnings: r[7], info: r[8], handshakes: r[9], arguments: r[3])
            }
        }
    }

    public func countExchanges(session: Int64, filter: BrowseFilter) throws -> Int {
        let (whereSQL, args) = Self.conditions(filter, session: session)
        return try writer.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM exchange e WHERE \(whereSQL)", arguments: args) ?? 0 }
    }

    public func exchangePage(session: Int64, filter: BrowseFilter, offset: Int, limit: Int) throws -> [ExchangeRow] {
        let (whereSQL, args) = Self.conditions(filter, session: session)
        return try writer.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT e.id, e.started_at, e.method, e.host, e.port, e.target, e.status, e.end_ms, e.oauth_roles, e.error_kind, e.tls_failure,
                  (SELECT group_concat(fi.rule || '/' || fi.severity) FROM finding_exchange fe JOIN finding fi ON fi.id = fe.finding_id WHERE fe.exchange_id = e.id)
                FROM exchange e WHERE \(whereSQL) ORDER BY e.id LIMIT ? OFFSET ?
                """, arguments: args + [limit, offset])
            return rows.map { r in
                ExchangeRow(id: r[0], startedAt: Date(timeIntervalSince1970: r[1]), method: r[2], host: r[3], port: r[4], target: r[5], status: r[6],
                            durationMs: r[7], roles: ((r[8] as String?) ?? "").split(separator: ",").map(String.init), error: r[9], tlsFailure: r[10],
                            findings: Self.badges(r[11]))
            }
        }
    }

    static func badges(_ text: String?) -> [(rule: String, severity: String)] {
        (text ?? "").split(separator: ",").compactMap { item in
            let parts = item.split(separator: "/")
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        }
    }

    public func exchange(id: Int64) throws -> Exchange? {
        try writer.read { db in try Int64.fetchOne(db, sql: "SELECT session_id FROM exchange WHERE id = ?", arguments: [id]) }
            .flatMap { session in try exchanges(session: session, limit: 1, after: id - 1).first }
    }

    public func maxExchangeID(session: Int64) throws -> Int64 {
        try writer.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM exchange WHERE session_id = ?", arguments: [session]) ?? 0 }
    }

    static func transactionConditions(_ filter: BrowseFilter, session: Int64) -> (String, StatementArguments) {
        var sql = "t.session_id = ?"
        var args: StatementArguments = [session]
        if let h = filter.host { sql += " AND t.server_host LIKE ?"; args += ["%\(h)%"] }
        if let r = filter.rule { sql += " AND EXISTS (SELECT 1 FROM finding WHERE transaction_id = t.id AND rule = ?)"; args += [r] }
        if let s = filter.severity { sql += " AND EXISTS (SELECT 1 FROM finding WHERE transaction_id = t.id AND severity = ?)"; args += [s] }
        if let r = filter.role { sql += " AND EXISTS (SELECT 1 FROM transaction_member WHERE transaction_id = t.id AND leg LIKE ?)"; args += ["%\(r)%"] }
        for w in filter.words { sql += " AND (t.client_id LIKE ? OR t.server_host LIKE ? OR t.outcome LIKE ?)"; args += ["%\(w)%", "%\(w)%", "%\(w)%"] }
        return (sql, args)
    }

    public func countTransactions(session: Int64, filter: BrowseFilter) throws -> Int {
        let (w, args) = Self.transactionConditions(filter, session: session)
        return try writer.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM oauth_transaction t WHERE \(w)", arguments: args) ?? 0 }
    }

    public func transactionPage(session: Int64, filter: BrowseFilter, offset: Int, limit: Int) throws -> [TransactionRow] {
        let (w, args) = Self.transactionConditions(filter, session: session)
        return try writer.read { db in
            try Row.fetchAll(db, sql: """
                SELECT t.number, t.id, t.client_id, t.server_host, t.grant_type, t.outcome, t.started_at,
                  (SELECT group_concat(rule || '/' || severity) FROM finding WHERE transaction_id = t.id)
                FROM oauth_transaction t WHERE \(w) ORDER BY t.number LIMIT ? OFFSET ?
                """, arguments: args + [limit, offset]).map { r in
                TransactionRow(number: r[0], rowID: r[1], clientID: r[2], serverHost: r[3], grantType: r[4], outcome: r[5],
                               startedAt: Date(timeIntervalSince1970: r[6]), findings: Self.badges(r[7]))
            }
        }
    }

    public func transactionMembers(rowID: Int64) throws -> [(leg: String, row: ExchangeRow)] {
        try writer.read { db in
            try Row.fetchAll(db, sql: """
                SELECT m.leg, e.id, e.started_at, e.method, e.host, e.port, e.target, e.status, e.end_ms, e.oauth_roles, e.error_kind, e.tls_failure
                FROM transaction_member m JOIN exchange e ON e.id = m.exchange_id WHERE m.transaction_id = ? ORDER BY e.id
                """, arguments: [rowID]).map { r in
                (r[0], ExchangeRow(id: r[1], startedAt: Date(timeIntervalSince1970: r[2]), method: r[3], host: r[4], port: r[5], target: r[6], status: r[7],
                                   durationMs: r[8], roles: ((r[9] as String?) ?? "").split(separator: ",").map(String.init), error: r[10], tlsFailure: r[11], findings: []))
            }
        }
    }

    static func findingConditions(_ filter: BrowseFilter, session: Int64, exchange: Int64?) -> (String, StatementArguments) {
        var sql = "f.session_id = ?"
        var args: StatementArguments = [session]
        if let r = filter.rule { sql += " AND f.rule = ?"; args += [r] }
        if let s = filter.severity { sql += " AND f.severity = ?"; args += [s] }
        if let e = exchange { sql += " AND EXISTS (SELECT 1 FROM finding_exchange WHERE finding_id = f.id AND exchange_id = ?)"; args += [e] }
        for w in filter.words { sql += " AND (f.title LIKE ? OR f.rule LIKE ?)"; args += ["%\(w)%", "%\(w)%"] }
        return (sql, args)
    }

    public func countFindings(session: Int64, filter: BrowseFilter) throws -> Int {
        let (w, args) = Self.findingConditions(filter, session: session, exchange: nil)
        return try writer.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM finding f WHERE \(w)", arguments: args) ?? 0 }
    }

    /// Findings, errors first; a page at a time (or those of one exchange).
    public func browseFindings(session: Int64, filter: BrowseFilter, exchange: Int64? = nil, offset: Int = 0, limit: Int = -1) throws -> [FindingRow] {
        let (w, args) = Self.findingConditions(filter, session: session, exchange: exchange)
        return try writer.read { db in
            let sql = """
                SELECT f.id, f.rule, f.severity, f.title, f.explanation, f.fix, f.evidence, f.exchanges, t.number
                FROM finding f LEFT JOIN oauth_transaction t ON t.id = f.transaction_id WHERE \(w)
                ORDER BY CASE f.severity WHEN 'error' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, f.id LIMIT ? OFFSET ?
                """
            return try Row.fetchAll(db, sql: sql, arguments: args + [limit, offset]).map { r in
                FindingRow(id: r[0], rule: r[1], severity: r[2], title: r[3], explanation: r[4], fix: r[5],
                           evidence: (try? JSONDecoder().decode([String: String].self, from: Data((r[6] as String).utf8))) ?? [:],
                           exchanges: (try? JSONDecoder().decode([Int64].self, from: Data((r[7] as String).utf8))) ?? [], transaction: r[8])
            }
        }
    }
}
