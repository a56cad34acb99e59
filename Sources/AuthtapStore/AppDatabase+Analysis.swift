import AuthtapAnalyzer
import AuthtapModel
import Foundation
import GRDB

extension AppDatabase {
    /// Replaces the stored analysis of a session (re-analysis is idempotent).
    public func save(analysis: Analysis, session: Int64) throws {
        try writer.write { db in
            try db.execute(sql: "DELETE FROM finding WHERE session_id = ?", arguments: [session])
            try db.execute(sql: "DELETE FROM oauth_transaction WHERE session_id = ?", arguments: [session])
            var rowIDs: [Int: Int64] = [:]
            let tx = try db.cachedStatement(sql: """
                INSERT INTO oauth_transaction (session_id, number, client_id, server_host, grant_type, state, started_at, outcome)
                VALUES (?,?,?,?,?,?,?,?)
                """)
            let member = try db.cachedStatement(sql: "INSERT OR IGNORE INTO transaction_member (transaction_id, exchange_id, leg) VALUES (?,?,?)")
            for t in analysis.transactions {
                try tx.execute(arguments: [session, t.index, t.clientID, t.serverHost, t.grantType, t.state, t.startedAt.timeIntervalSince1970, t.outcome])
                let id = db.lastInsertedRowID
                rowIDs[t.index] = id
                for m in t.members { try member.execute(arguments: [id, m.exchange, m.leg.rawValue]) }
            }
            let finding = try db.cachedStatement(sql: """
                INSERT INTO finding (session_id, transaction_id, rule, severity, title, explanation, fix, evidence, exchanges)
                VALUES (?,?,?,?,?,?,?,?,?)
                """)
            let link = try db.cachedStatement(sql: "INSERT OR IGNORE INTO finding_exchange (finding_id, exchange_id) VALUES (?,?)")
            for f in analysis.findings {
                try finding.execute(arguments: [
                    session, f.transaction.flatMap { rowIDs[$0] }, f.rule, f.severity.rawValue, f.title, f.explanation, f.fix,
                    Self.json(f.evidence), Self.json(f.exchanges),
                ])
                let id = db.lastInsertedRowID
                for e in f.exchanges { try link.execute(arguments: [id, e]) }
            }
        }
    }

    /// The stored analysis of a session.
    public func analysis(session: Int64) throws -> Analysis {
        try writer.read { db in
            var numbers: [Int64: Int] = [:]
            var transactions: [Transaction] = []
            for row in try Row.fetchAll(db, sql: "SELECT * FROM oauth_transaction WHERE session_id = ? ORDER BY number", arguments: [session]) {
                let id: Int64 = row["id"]
                let number: Int = row["number"]
                numbers[id] = number
                let members = try Row.fetchAll(db, sql: "SELECT exchange_id, leg FROM transaction_member WHERE transaction_id = ? ORDER BY exchange_id", arguments: [id])
                    .map { Transaction.Member(exchange: $0["exchange_id"], leg: Leg(rawValue: $0["leg"]) ?? .other) }
                transactions.append(Transaction(
                    index: number, clientID: row["client_id"], serverHost: row["server_host"], grantType: row["grant_type"],
                    state: row["state"], startedAt: Date(timeIntervalSince1970: row["started_at"]), outcome: row["outcome"], members: members))
            }
            let findings = try Row.fetchAll(db, sql: "SELECT * FROM finding WHERE session_id = ? ORDER BY id", arguments: [session]).map { row in
                Finding(
                    rule: row["rule"], severity: Severity(rawValue: row["severity"]) ?? .info, title: row["title"],
                    explanation: row["explanation"], fix: row["fix"],
                    exchanges: (try? JSONDecoder().decode([Int64].self, from: Data((row["exchanges"] as String).utf8))) ?? [],
                    transaction: (row["transaction_id"] as Int64?).flatMap { numbers[$0] },
                    evidence: (try? JSONDecoder().decode([String: String].self, from: Data((row["evidence"] as String).utf8))) ?? [:])
            }
            return Analysis(transactions: transactions, findings: findings)
        }
    }

    /// How many exchanges of a session the analyzer reads (those with an OAuth role or an error).
    public func analyzableCount(session: Int64) throws -> Int {
        try writer.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM exchange WHERE session_id = ? AND (oauth_roles IS NOT NULL OR error_kind IS NOT NULL)",
                             arguments: [session]) ?? 0
        }
    }

    /// Per session: transactions, and findings by severity (for listings).
    public func analysisCounts() throws -> [Int64: (transactions: Int, errors: Int, warnings: Int, info: Int)] {
        try writer.read { db in
            var result: [Int64: (Int, Int, Int, Int)] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT session_id, COUNT(*) FROM oauth_transaction GROUP BY session_id") {
                result[row[0], default: (0, 0, 0, 0)].0 = row[1]
            }
            for row in try Row.fetchAll(db, sql: "SELECT session_id, severity, COUNT(*) FROM finding GROUP BY session_id, severity") {
                let id: Int64 = row[0]
                let n: Int = row[2]
                switch row[1] as String {
                case "error": result[id, default: (0, 0, 0, 0)].1 = n
                case "warning": result[id, default: (0, 0, 0, 0)].2 = n
                default: result[id, default: (0, 0, 0, 0)].3 = n
                }
            }
            return result.mapValues { (transactions: $0.0, errors: $0.1, warnings: $0.2, info: $0.3) }
        }
    }

    /// Session ids, oldest first.
    public func sessionIDs() throws -> [Int64] {
        try writer.read { db in try Int64.fetchAll(db, sql: "SELECT id FROM session ORDER BY id") }
    }

    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }
}
