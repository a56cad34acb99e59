import AuthtapModel
import Foundation
import GRDB

extension AppDatabase {
    /// Replaces the stored analysis of a session (re-analysis is idempotent).
    public func save(analysis: Analysis, session: Int64) throws {
        do {
            try write(analysis: analysis, session: session)
        } catch {
            throw StoreError.wrap(error, path: writer.path)
        }
    }

    private func write(analysis: Analysis, session: Int64) throws {
        try writer.write { db in
            try db.execute(sql: "DELETE FROM finding WHERE session_id = ?", arguments: [session])
            try db.execute(sql: "DELETE FROM oauth_transaction WHERE session_id = ?", arguments: [session])
            var rowIDs: [Int: Int64] = [:]
            let tx = try db.cachedStatement(
                sql: """
                    INSERT INTO oauth_transaction (session_id, number, client_id, server_host, grant_type, state, started_at, outcome)
                    VALUES (?,?,?,?,?,?,?,?)
                    """)
            let member = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO transaction_member (transaction_id, exchange_id, leg) VALUES (?,?,?)")
            for t in analysis.transactions {
                try tx.execute(arguments: [
                    session, t.index, t.clientID, t.serverHost, t.grantType, t.state, t.startedAt.timeIntervalSince1970,
                    t.outcome,
                ])
                let id = db.lastInsertedRowID
                rowIDs[t.index] = id
                for m in t.members { try member.execute(arguments: [id, m.exchange, m.leg.rawValue]) }
            }
            let finding = try db.cachedStatement(
                sql: """
                    INSERT INTO finding (session_id, transaction_id, rule, severity, title, explanation, fix, evidence,
                        exchanges, root_cause, related, candidates)
                    VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
                    """)
            let link = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO finding_exchange (finding_id, exchange_id) VALUES (?,?)")
            for f in analysis.findings {
                try finding.execute(arguments: [
                    session, f.transaction.flatMap { rowIDs[$0] }, f.rule.rawValue, f.severity.rawValue, f.title,
                    f.explanation, f.fix,
                    Self.json(f.evidence), Self.json(f.exchanges), f.rootCause, f.related.map { Self.json($0) },
                    f.candidates.map { Self.json($0) },
                ])
                let id = db.lastInsertedRowID
                for e in f.exchanges { try link.execute(arguments: [id, e]) }
            }
        }
    }

    /// The stored analysis of a session. A damaged transaction, member or finding row is skipped and reported
    /// (`readProblems`); a finding whose evidence or exchange list is not JSON keeps the rest.
    public func analysis(session: Int64) throws -> Analysis {
        try reading { db in
            let (transactions, numbers) = try storedTransactions(session: session, db: db)
            let findings = try storedFindings(session: session, numbers: numbers, db: db)
            return Analysis(transactions: transactions, findings: findings)
        }
    }

    /// A session's transactions in number order, with their members, and each row id's number.
    private func storedTransactions(session: Int64, db: Database) throws -> ([Transaction], [Int64: Int]) {
        var numbers: [Int64: Int] = [:]
        var transactions: [Transaction] = []
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT id, number, client_id, server_host, grant_type, state, started_at, outcome
                FROM oauth_transaction WHERE session_id = ? ORDER BY number
                """, arguments: [session])
        for row in rows {
            let r = StoredRow(row)
            do {
                let id = try r.int64(0, "id")
                let number = try r.int(1, "number")
                let members = try storedMembers(transaction: id, db: db)
                let t = Transaction(
                    index: number, clientID: try r.optionalText(2, "client_id"),
                    serverHost: try r.optionalText(3, "server_host"),
                    grantType: try r.optionalText(4, "grant_type"), state: try r.optionalText(5, "state"),
                    startedAt: try r.date(6, "started_at"), outcome: try r.text(7, "outcome"),
                    members: members)
                numbers[id] = number
                transactions.append(t)
            } catch let bad as BadColumn {
                readProblems.skipped("transaction", id: r.label(0), bad)
            }
        }
        return (transactions, numbers)
    }

    private func storedMembers(transaction id: Int64, db: Database) throws -> [Transaction.Member] {
        try Row.fetchAll(
            db,
            sql: """
                SELECT exchange_id, leg FROM transaction_member
                WHERE transaction_id = ? ORDER BY exchange_id
                """,
            arguments: [id]
        ).compactMap { row -> Transaction.Member? in
            let m = StoredRow(row)
            do {
                return Transaction.Member(
                    exchange: try m.int64(0, "exchange_id"), leg: Leg(rawValue: try m.text(1, "leg")) ?? .other)
            } catch let bad {
                readProblems.skipped("member of transaction", id: String(id), bad)
                return nil
            }
        }
    }

    /// A session's findings in id order; `numbers` turns a transaction row id into its number.
    private func storedFindings(session: Int64, numbers: [Int64: Int], db: Database) throws -> [Finding] {
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT id, rule, severity, title, explanation, fix, exchanges, transaction_id, evidence, root_cause,
                    related, candidates
                FROM finding WHERE session_id = ? ORDER BY id
                """, arguments: [session])
        return rows.compactMap { row -> Finding? in
            let r = StoredRow(row)
            let id = r.label(0)
            do {
                var finding = Finding(
                    rule: RuleID(try r.text(1, "rule")),
                    severity: Severity(rawValue: try r.text(2, "severity")) ?? .info,
                    title: try r.text(3, "title"), explanation: try r.text(4, "explanation"),
                    fix: try r.text(5, "fix"),
                    exchanges: decodeJSON(
                        [Int64].self, try r.optionalText(6, "exchanges"), fallback: [],
                        table: "finding", id: id, column: "exchanges", readAs: "no exchanges"),
                    transaction: try r.optionalInt64(7, "transaction_id").flatMap { numbers[$0] },
                    evidence: decodeJSON(
                        [String: String].self, try r.optionalText(8, "evidence"), fallback: [:],
                        table: "finding", id: id, column: "evidence", readAs: "no evidence"))
                finding.rootCause = try r.optionalInt64(9, "root_cause").map { $0 != 0 }
                finding.related = try r.optionalText(10, "related").flatMap {
                    decodeJSON(
                        [RuleID]?.self, $0, fallback: nil, table: "finding", id: id, column: "related", readAs: "none")
                }
                finding.candidates = try r.optionalText(11, "candidates").flatMap {
                    decodeJSON(
                        [Finding.Candidate]?.self, $0, fallback: nil, table: "finding", id: id, column: "candidates",
                        readAs: "none")
                }
                return finding
            } catch let bad {
                readProblems.skipped("finding", id: id, bad)
                return nil
            }
        }
    }

    /// How many exchanges of a session the analyzer reads (those with an OAuth role or an error).
    public func analyzableCount(session: Int64) throws -> Int {
        try reading { db in
            try Int.fetchOne(
                db,
                sql:
                    "SELECT COUNT(*) FROM exchange WHERE session_id = ? AND (oauth_roles IS NOT NULL OR error_kind IS NOT NULL)",
                arguments: [session]) ?? 0
        }
    }

    /// Per session: transactions, and findings by severity (for listings).
    /// Per session: transactions, and findings by severity (for listings). Rows whose session id is not a
    /// whole number (damaged) are left out of the counts.
    public func analysisCounts() throws -> [Int64: (transactions: Int, errors: Int, warnings: Int, info: Int)] {
        try reading { db in
            var result: [Int64: (Int, Int, Int, Int)] = [:]
            for row in try Row.fetchAll(
                db, sql: "SELECT session_id, COUNT(*) FROM oauth_transaction GROUP BY session_id")
            {
                let r = StoredRow(row)
                guard let id = try? r.int64(0, "session_id"), let n = try? r.count(1, "count") else { continue }
                result[id, default: (0, 0, 0, 0)].0 = n
            }
            let sql = "SELECT session_id, severity, COUNT(*) FROM finding GROUP BY session_id, severity"
            for row in try Row.fetchAll(db, sql: sql) {
                let r = StoredRow(row)
                guard let id = try? r.int64(0, "session_id"), let n = try? r.count(2, "count") else { continue }
                switch try? r.text(1, "severity") {
                case "error": result[id, default: (0, 0, 0, 0)].1 += n
                case "warning": result[id, default: (0, 0, 0, 0)].2 += n
                default: result[id, default: (0, 0, 0, 0)].3 += n
                }
            }
            return result.mapValues { (transactions: $0.0, errors: $0.1, warnings: $0.2, info: $0.3) }
        }
    }

    /// Session ids, oldest first (an id that is not a whole number is skipped and reported).
    public func sessionIDs() throws -> [Int64] {
        try reading { db in
            try Row.fetchAll(db, sql: "SELECT id FROM session ORDER BY id").compactMap { row in
                do {
                    return try StoredRow(row).int64(0, "id")
                } catch let bad {
                    readProblems.skipped("session", id: "?", bad)
                    return nil
                }
            }
        }
    }

    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }
}
