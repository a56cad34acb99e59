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

    public static func == (a: ExchangeRow, b: ExchangeRow) -> Bool {
        a.id == b.id && a.findings.count == b.findings.count
    }
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
        if let e = f.error {
            sql.append("(e.error_kind LIKE ? OR e.tls_failure LIKE ?)"); args += ["%\(e)%", "%\(e)%"]
        }
        if f.rule != nil || f.severity != nil {
            var sub =
                "EXISTS (SELECT 1 FROM finding_exchange fe JOIN finding fi ON fi.id = fe.finding_id WHERE fe.exchange_id = e.id"
            if let r = f.rule { sub += " AND fi.rule = ?"; args += [r] }
            if let s = f.severity { sub += " AND fi.severity = ?"; args += [s] }
            sql.append(sub + ")")
        }
        return (sql.joined(separator: " AND "), args)
    }

    public func browseSessions() throws -> [SessionRow] {
        try reading { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT s.id, s.started_at, s.ended_at, s.arguments,
                      (SELECT COUNT(*) FROM exchange WHERE session_id = s.id),
                      (SELECT COUNT(*) FROM oauth_transaction WHERE session_id = s.id),
                      (SELECT COUNT(*) FROM finding WHERE session_id = s.id AND severity = 'error'),
                      (SELECT COUNT(*) FROM finding WHERE session_id = s.id AND severity = 'warning'),
                      (SELECT COUNT(*) FROM finding WHERE session_id = s.id AND severity = 'info'),
                      (SELECT COUNT(*) FROM handshake WHERE session_id = s.id)
                    FROM session s ORDER BY s.id DESC
                    """
            ).compactMap { row in
                let r = StoredRow(row)
                do {
                    return SessionRow(
                        id: try r.int64(0, "id"), startedAt: try r.date(1, "started_at"),
                        endedAt: try r.optionalDate(2, "ended_at"),
                        exchanges: try r.count(4, "exchanges"), transactions: try r.count(5, "transactions"),
                        errors: try r.count(6, "errors"), warnings: try r.count(7, "warnings"),
                        info: try r.count(8, "info"),
                        handshakes: try r.count(9, "handshakes"), arguments: try r.text(3, "arguments"))
                } catch let bad {
                    readProblems.skipped("session", id: r.label(0), bad)
                    return nil
                }
            }
        }
    }

    public func countExchanges(session: Int64, filter: BrowseFilter) throws -> Int {
        let (whereSQL, args) = Self.conditions(filter, session: session)
        return try reading { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM exchange e WHERE \(whereSQL)", arguments: args) ?? 0
        }
    }

    public func exchangePage(session: Int64, filter: BrowseFilter, offset: Int, limit: Int) throws -> [ExchangeRow] {
        let (whereSQL, args) = Self.conditions(filter, session: session)
        return try reading { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT e.id, e.started_at, e.method, e.host, e.port, e.target, e.status, e.end_ms, e.oauth_roles, e.error_kind, e.tls_failure,
                      (SELECT group_concat(fi.rule || '/' || fi.severity) FROM finding_exchange fe JOIN finding fi ON fi.id = fe.finding_id WHERE fe.exchange_id = e.id)
                    FROM exchange e WHERE \(whereSQL) ORDER BY e.id LIMIT ? OFFSET ?
                    """, arguments: args + [limit, offset])
            return rows.compactMap { row in
                let r = StoredRow(row)
                do {
                    var e = try Self.exchangeRow(r, from: 0)
                    e.findings = Self.badges(try r.optionalText(11, "findings"))
                    return e
                } catch let bad {
                    readProblems.skipped("exchange", id: r.label(0), bad)
                    return nil
                }
            }
        }
    }

    /// The list columns of an exchange (`e.id … e.tls_failure`, 11 of them) starting at column `first`.
    static func exchangeRow(_ r: StoredRow, from first: Int) throws -> ExchangeRow {
        let i = first
        return ExchangeRow(
            id: try r.int64(i, "id"), startedAt: try r.date(i + 1, "started_at"), method: try r.text(i + 2, "method"),
            host: try r.text(i + 3, "host"), port: try r.int(i + 4, "port"), target: try r.text(i + 5, "target"),
            status: try r.optionalInt(i + 6, "status"), durationMs: try r.optionalDouble(i + 7, "end_ms"),
            roles: (try r.optionalText(i + 8, "oauth_roles") ?? "").split(separator: ",").map(String.init),
            error: try r.optionalText(i + 9, "error_kind"), tlsFailure: try r.optionalText(i + 10, "tls_failure"),
            findings: [])
    }

    static func badges(_ text: String?) -> [(rule: String, severity: String)] {
        (text ?? "").split(separator: ",").compactMap { item in
            let parts = item.split(separator: "/")
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        }
    }

    /// One exchange by id, or nil when there is none or its row is damaged (reported).
    public func exchange(id: Int64) throws -> Exchange? {
        guard id > Int64.min else { return nil }
        let session = try reading { db -> Int64?? in
            let sql = "SELECT session_id FROM exchange WHERE id = ?"
            guard let row = try Row.fetchOne(db, sql: sql, arguments: [id]) else { return nil }
            do {
                return .some(try StoredRow(row).optionalInt64(0, "session_id"))
            } catch let bad {
                readProblems.skipped("exchange", id: String(id), bad)
                return nil
            }
        }
        guard let session else { return nil }
        return try exchanges(session: session, limit: 1, after: id - 1).first { $0.id == id }
    }

    public func maxExchangeID(session: Int64) throws -> Int64 {
        try reading { db in
            let sql = "SELECT MAX(id) FROM exchange WHERE session_id = ?"
            let row = try Row.fetchOne(db, sql: sql, arguments: [session])
            return row.flatMap { try? StoredRow($0).optionalInt64(0, "id") } ?? 0
        }
    }

    static func transactionConditions(_ filter: BrowseFilter, session: Int64) -> (String, StatementArguments) {
        var sql = "t.session_id = ?"
        var args: StatementArguments = [session]
        if let h = filter.host { sql += " AND t.server_host LIKE ?"; args += ["%\(h)%"] }
        if let r = filter.rule {
            sql += " AND EXISTS (SELECT 1 FROM finding WHERE transaction_id = t.id AND rule = ?)"; args += [r]
        }
        if let s = filter.severity {
            sql += " AND EXISTS (SELECT 1 FROM finding WHERE transaction_id = t.id AND severity = ?)"; args += [s]
        }
        if let r = filter.role {
            sql += " AND EXISTS (SELECT 1 FROM transaction_member WHERE transaction_id = t.id AND leg LIKE ?)";
            args += ["%\(r)%"]
        }
        for w in filter.words {
            sql += " AND (t.client_id LIKE ? OR t.server_host LIKE ? OR t.outcome LIKE ?)";
            args += ["%\(w)%", "%\(w)%", "%\(w)%"]
        }
        return (sql, args)
    }

    public func countTransactions(session: Int64, filter: BrowseFilter) throws -> Int {
        let (w, args) = Self.transactionConditions(filter, session: session)
        return try reading { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM oauth_transaction t WHERE \(w)", arguments: args) ?? 0
        }
    }

    public func transactionPage(session: Int64, filter: BrowseFilter, offset: Int, limit: Int) throws
        -> [TransactionRow]
    {
        let (w, args) = Self.transactionConditions(filter, session: session)
        return try reading { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT t.number, t.id, t.client_id, t.server_host, t.grant_type, t.outcome, t.started_at,
                      (SELECT group_concat(rule || '/' || severity) FROM finding WHERE transaction_id = t.id)
                    FROM oauth_transaction t WHERE \(w) ORDER BY t.number LIMIT ? OFFSET ?
                    """, arguments: args + [limit, offset]
            ).compactMap { row in
                let r = StoredRow(row)
                do {
                    return TransactionRow(
                        number: try r.int(0, "number"), rowID: try r.int64(1, "id"),
                        clientID: try r.optionalText(2, "client_id"), serverHost: try r.optionalText(3, "server_host"),
                        grantType: try r.optionalText(4, "grant_type"),
                        outcome: try r.text(5, "outcome"), startedAt: try r.date(6, "started_at"),
                        findings: Self.badges(try r.optionalText(7, "findings")))
                } catch let bad {
                    readProblems.skipped("transaction", id: r.label(1), bad)
                    return nil
                }
            }
        }
    }

    public func transactionMembers(rowID: Int64) throws -> [(leg: String, row: ExchangeRow)] {
        try reading { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT m.leg, e.id, e.started_at, e.method, e.host, e.port, e.target, e.status, e.end_ms, e.oauth_roles, e.error_kind, e.tls_failure
                    FROM transaction_member m JOIN exchange e ON e.id = m.exchange_id WHERE m.transaction_id = ? ORDER BY e.id
                    """, arguments: [rowID]
            ).compactMap { row in
                let r = StoredRow(row)
                do {
                    return (try r.text(0, "leg"), try Self.exchangeRow(r, from: 1))
                } catch let bad {
                    readProblems.skipped("exchange", id: r.label(1), bad)
                    return nil
                }
            }
        }
    }

    static func findingConditions(_ filter: BrowseFilter, session: Int64, exchange: Int64?) -> (
        String, StatementArguments
    ) {
        var sql = "f.session_id = ?"
        var args: StatementArguments = [session]
        if let r = filter.rule { sql += " AND f.rule = ?"; args += [r] }
        if let s = filter.severity { sql += " AND f.severity = ?"; args += [s] }
        if let e = exchange {
            sql += " AND EXISTS (SELECT 1 FROM finding_exchange WHERE finding_id = f.id AND exchange_id = ?)";
            args += [e]
        }
        for w in filter.words { sql += " AND (f.title LIKE ? OR f.rule LIKE ?)"; args += ["%\(w)%", "%\(w)%"] }
        return (sql, args)
    }

    public func countFindings(session: Int64, filter: BrowseFilter) throws -> Int {
        let (w, args) = Self.findingConditions(filter, session: session, exchange: nil)
        return try reading { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM finding f WHERE \(w)", arguments: args) ?? 0
        }
    }

    /// Findings, errors first; a page at a time (or those of one exchange).
    public func browseFindings(
        session: Int64, filter: BrowseFilter, exchange: Int64? = nil, offset: Int = 0, limit: Int = -1
    ) throws -> [FindingRow] {
        let (w, args) = Self.findingConditions(filter, session: session, exchange: exchange)
        return try reading { db in
            let sql = """
                SELECT f.id, f.rule, f.severity, f.title, f.explanation, f.fix, f.evidence, f.exchanges, t.number
                FROM finding f LEFT JOIN oauth_transaction t ON t.id = f.transaction_id WHERE \(w)
                ORDER BY CASE f.severity WHEN 'error' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, f.id LIMIT ? OFFSET ?
                """
            return try Row.fetchAll(db, sql: sql, arguments: args + [limit, offset]).compactMap { row in
                let r = StoredRow(row)
                let id = r.label(0)
                do {
                    return FindingRow(
                        id: try r.int64(0, "id"), rule: try r.text(1, "rule"), severity: try r.text(2, "severity"),
                        title: try r.text(3, "title"), explanation: try r.text(4, "explanation"),
                        fix: try r.text(5, "fix"),
                        evidence: decodeJSON(
                            [String: String].self, try r.optionalText(6, "evidence"), fallback: [:],
                            table: "finding", id: id, column: "evidence", readAs: "no evidence"),
                        exchanges: decodeJSON(
                            [Int64].self, try r.optionalText(7, "exchanges"), fallback: [],
                            table: "finding", id: id, column: "exchanges", readAs: "no exchanges"),
                        transaction: try r.optionalInt(8, "number"))
                } catch let bad {
                    readProblems.skipped("finding", id: id, bad)
                    return nil
                }
            }
        }
    }
}
