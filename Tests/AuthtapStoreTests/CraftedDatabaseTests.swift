import AuthtapModel
import Foundation
import GRDB
import Testing

@testable import AuthtapDissector
@testable import AuthtapStore

/// Databases built with the real migrator, then damaged with raw SQL the way a hand edit, another program or
/// another version could leave them. Every public read must come back (a trap would stop the whole test
/// process), skip or default what it cannot read, and say so in one line.
enum CraftedDB {
    /// What authtap's reads accept in a column; decides which damaged values must be reported.
    enum Kind: Sendable {
        case text, optText, int, optInt, count, optCount, bool, date, optDate, real, optReal
        /// A body: NULL, text or a blob; a number is damage.
        case body
        /// JSON decoded into a value (TLS facts, a finding's evidence and exchange ids): NULL reads as none,
        /// anything else these tests write is invalid JSON.
        case optJSON
        /// The handshake's whole record as JSON.
        case facts
        /// Only in WHERE and GROUP BY: a damaged value leaves the row out of a filter; nothing to report.
        case filterOnly
    }

    enum Bad: String, CaseIterable, Sendable {
        case null = "NULL", text = "'not a number'", blob = "X'00FF'", huge = "1e300", negative = "-5",
            fraction = "2.5", infinity = "9e999"
    }

    static func refuses(_ kind: Kind, _ v: Bad) -> Bool {
        let number: Set<Bad> = [.text, .blob, .huge, .fraction, .infinity]
        switch kind {
        case .text: return v == .null
        case .optText, .filterOnly: return false
        case .int, .bool: return v == .null || number.contains(v)
        case .optInt: return number.contains(v)
        case .count: return v == .null || v == .negative || number.contains(v)
        case .optCount: return v == .negative || number.contains(v)
        case .date: return [.null, .text, .blob, .huge, .infinity].contains(v)
        case .optDate: return [.text, .blob, .huge, .infinity].contains(v)
        case .real: return [.null, .text, .blob, .infinity].contains(v)
        case .optReal: return [.text, .blob, .infinity].contains(v)
        case .body: return [.huge, .negative, .fraction, .infinity].contains(v)
        case .optJSON: return v != .null
        case .facts: return true
        }
    }

    /// Every column a read looks at (INTEGER PRIMARY KEY ids cannot hold anything else; see `foreignSchema`).
    static let columns: [(table: String, column: String, kind: Kind)] = [
        ("session", "started_at", .date), ("session", "ended_at", .optDate), ("session", "version", .text),
        ("session", "arguments", .text), ("session", "listen", .optText), ("session", "dropped", .count),
        ("exchange", "session_id", .optInt), ("exchange", "connection_id", .int), ("exchange", "client_address", .text),
        ("exchange", "scheme", .text), ("exchange", "host", .text), ("exchange", "port", .int),
        ("exchange", "method", .text), ("exchange", "target", .text), ("exchange", "http_version", .text),
        ("exchange", "status", .optInt), ("exchange", "request_headers", .text),
        ("exchange", "response_headers", .text),
        ("exchange", "request_body", .body), ("exchange", "request_body_size", .count),
        ("exchange", "request_body_truncated", .bool), ("exchange", "response_body", .body),
        ("exchange", "response_body_size", .count), ("exchange", "response_body_truncated", .bool),
        ("exchange", "client_tls", .optJSON), ("exchange", "upstream_tls", .optJSON),
        ("exchange", "insecure_upstream", .bool), ("exchange", "connection_reused", .bool),
        ("exchange", "started_at", .date), ("exchange", "connect_ms", .optReal), ("exchange", "tls_ms", .optReal),
        ("exchange", "request_sent_ms", .optReal), ("exchange", "first_byte_ms", .optReal),
        ("exchange", "end_ms", .optReal), ("exchange", "error_kind", .optText), ("exchange", "tls_failure", .optText),
        ("exchange", "error_detail", .optText),
        ("exchange", "oauth_roles", .optText), ("exchange", "oauth_params", .optText),
        ("exchange", "request_body_encoding", .optText), ("exchange", "request_body_decoded_size", .optCount),
        ("exchange", "request_body_note", .optText), ("exchange", "response_body_encoding", .optText),
        ("exchange", "response_body_decoded_size", .optCount), ("exchange", "response_body_note", .optText),
        ("tunnel", "session_id", .optInt), ("tunnel", "connection_id", .int), ("tunnel", "client_address", .text),
        ("tunnel", "host", .text), ("tunnel", "port", .int), ("tunnel", "intercepted", .bool),
        ("tunnel", "started_at", .date), ("tunnel", "duration_ms", .real), ("tunnel", "bytes_from_client", .count),
        ("tunnel", "bytes_from_upstream", .count), ("tunnel", "ending", .text), ("tunnel", "error_kind", .optText),
        ("tunnel", "error_detail", .optText),
        ("oauth_transaction", "session_id", .filterOnly), ("oauth_transaction", "number", .int),
        ("oauth_transaction", "client_id", .optText), ("oauth_transaction", "server_host", .optText),
        ("oauth_transaction", "grant_type", .optText), ("oauth_transaction", "state", .optText),
        ("oauth_transaction", "started_at", .date), ("oauth_transaction", "outcome", .text),
        ("transaction_member", "transaction_id", .filterOnly), ("transaction_member", "exchange_id", .int),
        ("transaction_member", "leg", .text),
        ("finding", "session_id", .filterOnly), ("finding", "transaction_id", .optInt), ("finding", "rule", .text),
        ("finding", "severity", .text), ("finding", "title", .text), ("finding", "explanation", .text),
        ("finding", "fix", .text), ("finding", "evidence", .optJSON), ("finding", "exchanges", .optJSON),
        ("handshake", "session_id", .int), ("handshake", "facts", .facts),
    ]

    struct Case: CustomTestStringConvertible, Sendable {
        var table: String
        var column: String
        var kind: Kind
        var value: Bad
        var testDescription: String { "\(table).\(column) = \(value.rawValue)" }
    }

    static let cases: [Case] = columns.flatMap { c in
        Bad.allCases.map { Case(table: c.table, column: c.column, kind: c.kind, value: $0) }
    }

    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("authtap-crafted-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A file migrated and filled by the real code (one session, three exchanges, a tunnel, a handshake, two
    /// transactions and two findings), its NOT NULL constraints removed so that NULLs can be written.
    static func pristine(at path: String) throws {
        do {
            let db = try AppDatabase(try DatabaseQueue(path: path))
            let session = try db.startSession(version: "t", arguments: ["proxy"], listen: "127.0.0.1:8080")
            let sid = try #require(session.id)
            var rows = (0..<3).map(sampleExchange)
            for i in rows.indices { rows[i].sessionID = sid }
            var tunnel = Tunnel(
                connectionID: 9, clientAddress: "127.0.0.1:1", host: "relay.test", port: 443,
                intercepted: false, start: Date(timeIntervalSince1970: 5))
            tunnel.sessionID = sid
            tunnel.ending = "client-closed"
            try db.insert(exchanges: rows, tunnels: [tunnel])
            let handshake = HandshakeRecord(
                client: "::1", clientPort: 5, server: "127.0.0.1", serverPort: 443, outcome: .alert, side: "client",
                alert: "unknown_ca", encryptedAlert: false, sni: "idp.test", alpnOffered: ["h2"],
                versionsOffered: ["TLSv1.3"], cipherSuitesOffered: 3, serverVersion: nil, cipher: nil, alpn: nil,
                helloRetryRequest: false, certificateSubject: nil, certificateIssuer: nil, certificateSANs: [],
                certificateNotBefore: nil, certificateNotAfter: nil, startMicros: 1, endMicros: 2, durationMs: 1.5,
                firstPacket: 1, lastPacket: 9, clientHelloRetransmits: 0, detail: "d")
            try db.insert(handshakes: [handshake], session: sid)
            try db.writer.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO oauth_transaction
                          (session_id, number, client_id, server_host, grant_type, state, started_at, outcome)
                        VALUES (?, 1, 'app', 'idp.test', 'authorization_code', 's', 1700000000, 'failed'),
                               (?, 2, 'app', 'idp.test', 'refresh_token', NULL, 1700000001, 'succeeded');
                        INSERT INTO transaction_member (transaction_id, exchange_id, leg)
                        VALUES (1, 1, 'token'), (2, 2, 'token');
                        INSERT INTO finding
                          (session_id, transaction_id, rule, severity, title, explanation, fix, evidence, exchanges)
                        VALUES (?, 1, 'invalid-grant', 'error', 'Invalid grant', 'e', 'f', '{"error":"invalid_grant"}',
                                '[1]'),
                               (?, 2, 'slow-token', 'warning', 'Slow', 'e', 'f', '{}', '[2]');
                        INSERT INTO finding_exchange (finding_id, exchange_id) VALUES (1, 1), (2, 2);
                        """, arguments: [sid, sid, sid, sid])
            }
        }
        var config = Configuration()
        config.foreignKeysEnabled = false
        let raw = try DatabaseQueue(path: path, configuration: config)
        try raw.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA writable_schema = ON")
            try db.execute(sql: "UPDATE sqlite_master SET sql = replace(sql, 'NOT NULL', '') WHERE type = 'table'")
            try db.execute(sql: "PRAGMA writable_schema = OFF")
        }
    }

    /// Raw SQL on a closed file, foreign keys off (a damaged file does not keep them either).
    static func execute(_ path: String, _ sql: String) throws {
        var config = Configuration()
        config.foreignKeysEnabled = false
        let raw = try DatabaseQueue(path: path, configuration: config)
        try raw.writeWithoutTransaction { try $0.execute(sql: sql) }
    }

    /// The capture as the CLI opens it, with problems kept rather than printed.
    static func open(_ path: String) throws -> AppDatabase {
        let db = try AppDatabase.open(path: path)
        db.readProblems.setEcho(false)
        return db
    }

    /// Calls every public read, for session 1 and for all sessions, the way the CLI commands and the TUI do.
    static func readEverything(_ db: AppDatabase) throws {
        let ids = try db.sessionIDs()
        _ = try db.sessions()
        _ = try db.browseSessions()
        _ = try db.analysisCounts()
        _ = try db.exchanges()
        _ = try db.exchanges(limit: 2, analyzable: true)
        _ = try db.tunnels()
        _ = try db.handshakes()
        var filters = [BrowseFilter()]
        var f = BrowseFilter()
        f.statusClass = 2
        f.words = ["idp"]
        f.rule = "invalid-grant"
        filters.append(f)
        for id in Set(ids + [1]) {
            _ = try db.proxyPort(session: id)
            _ = try db.exchanges(session: id, analyzable: true)
            _ = try db.analyzableCount(session: id)
            _ = try db.maxExchangeID(session: id)
            for e in Int64(0)...4 { _ = try db.exchange(id: e) }
            _ = try db.analysis(session: id)
            _ = try db.tunnels(session: id)
            _ = try db.handshakes(session: id)
            for filter in filters {
                _ = try db.countExchanges(session: id, filter: filter)
                _ = try db.exchangePage(session: id, filter: filter, offset: 0, limit: 100)
                _ = try db.countTransactions(session: id, filter: filter)
                for t in try db.transactionPage(session: id, filter: filter, offset: 0, limit: 100) {
                    _ = try db.transactionMembers(rowID: t.rowID)
                }
                for t in Int64(1)...3 { _ = try db.transactionMembers(rowID: t) }
                _ = try db.countFindings(session: id, filter: filter)
                _ = try db.browseFindings(session: id, filter: filter)
                _ = try db.browseFindings(session: id, filter: filter, exchange: 1)
            }
        }
    }

    /// How many rows of `table` the main read of that table returns.
    static func readCount(_ db: AppDatabase, table: String) throws -> Int? {
        switch table {
        case "session": return try db.sessions().count
        case "exchange": return try db.exchanges().count
        case "tunnel": return try db.tunnels().count
        case "handshake": return try db.handshakes().count
        case "finding": return try db.analysis(session: 1).findings.count
        default: return nil
        }
    }
}

@Suite struct CraftedDatabaseTests {
    /// One damaged value in one column: every read returns; a value the column cannot hold is reported in a line
    /// naming the column, and the row is skipped (JSON that does not decode is read as none instead); a value
    /// it can hold is read without a word.
    @Test(arguments: CraftedDB.cases)
    func damagedColumn(_ c: CraftedDB.Case) throws {
        let dir = try CraftedDB.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.sqlite").path
        try CraftedDB.pristine(at: path)
        let before = try CraftedDB.readCount(try CraftedDB.open(path), table: c.table)
        let row = "(SELECT MIN(rowid) FROM \(c.table))"
        try CraftedDB.execute(path, "UPDATE \(c.table) SET \(c.column) = \(c.value.rawValue) WHERE rowid = \(row)")
        let db = try CraftedDB.open(path)
        try CraftedDB.readEverything(db)
        let lines = db.readProblems.lines()
        if CraftedDB.refuses(c.kind, c.value) {
            #expect(lines.contains { $0.contains("column \(c.column) holds") }, "\(lines)")
            let skips = c.kind != .optJSON
            if let before, skips {
                #expect(try CraftedDB.readCount(db, table: c.table) == before - 1)
            } else if let before {
                #expect(try CraftedDB.readCount(db, table: c.table) == before)
            }
        } else {
            #expect(lines.isEmpty)
        }
        for line in lines {
            #expect(!line.contains("\n"))
            #expect(line.hasSuffix("; row skipped") || line.contains("; read as "))
        }
    }

    /// The line a damaged exchange gives, exactly.
    @Test func reportLineNamesTheRowTheColumnAndWhatItHolds() throws {
        let dir = try CraftedDB.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.sqlite").path
        try CraftedDB.pristine(at: path)
        try CraftedDB.execute(
            path,
            """
            UPDATE exchange SET status = 'abc' WHERE id = 2;
            UPDATE exchange SET request_body_size = -7 WHERE id = 3;
            UPDATE session SET started_at = 1e300;
            UPDATE finding SET evidence = '{not json' WHERE id = 1;
            """)
        let db = try CraftedDB.open(path)
        let exchanges = try db.exchanges()
        #expect(exchanges.map(\.id) == [1])
        #expect(try db.sessions().isEmpty)
        let analysis = try db.analysis(session: 1)
        #expect(analysis.findings.count == 2 && analysis.findings[0].evidence.isEmpty)
        #expect(
            db.readProblems.lines() == [
                "exchange 2: column status holds text; row skipped",
                "exchange 3: column request_body_size holds -7; row skipped",
                "session 1: column started_at holds 1e+300; row skipped",
                "finding 1: column evidence holds invalid JSON; read as no evidence",
            ])
        // Read again (a TUI redraws): each problem is listed once.
        _ = try db.exchanges()
        #expect(db.readProblems.count == 4)
    }

    /// Tables rebuilt by hand without their types and keys (`CREATE TABLE … AS`): even an id can then hold text.
    @Test func foreignSchemaWithTextIDs() throws {
        let dir = try CraftedDB.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.sqlite").path
        try CraftedDB.pristine(at: path)
        var sql = "DROP VIEW oauth_param;"
        for table in ["session", "exchange", "tunnel", "oauth_transaction", "finding", "handshake"] {
            sql += "CREATE TABLE \(table)_copy AS SELECT * FROM \(table); DROP TABLE \(table);"
            sql += "ALTER TABLE \(table)_copy RENAME TO \(table); UPDATE \(table) SET id = 'x' || id WHERE rowid = 1;"
        }
        try CraftedDB.execute(path, sql)
        let db = try CraftedDB.open(path)
        try CraftedDB.readEverything(db)
        #expect(try db.exchanges().count == 2)
        #expect(db.readProblems.lines().contains("exchange ?: column id holds text; row skipped"))
        #expect(db.readProblems.lines().contains("session ?: column id holds text; row skipped"))
    }

    /// Every value SQLite can store, in every column of every table read, at once.
    @Test(arguments: CraftedDB.Bad.allCases)
    func everyColumnDamagedAtOnce(_ value: CraftedDB.Bad) throws {
        let dir = try CraftedDB.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.sqlite").path
        try CraftedDB.pristine(at: path)
        // OR IGNORE: where a unique key would then hold one value twice, the second row keeps its own.
        let sql = CraftedDB.columns.map { "UPDATE OR IGNORE \($0.table) SET \($0.column) = \(value.rawValue);" }
            .joined()
        try CraftedDB.execute(path, sql)
        let db = try CraftedDB.open(path)
        try CraftedDB.readEverything(db)
    }

    @Test func notASQLiteFile() throws {
        let dir = try CraftedDB.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.sqlite").path
        let text = Data(String(repeating: "these are not the pages you are looking for\n", count: 200).utf8)
        try text.write(to: URL(fileURLWithPath: path))
        let error = try #require(throws: StoreError.self) { try AppDatabase.open(path: path) }
        #expect(error.description == "\(path) is not a SQLite database (file is not a database)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == text, "the file is left as it was")
    }

    /// Another program's SQLite database is refused before authtap writes anything to it (no WAL switch, no
    /// tables of ours).
    @Test func anotherProgramsDatabaseIsLeftAlone() throws {
        let dir = try CraftedDB.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("other.sqlite").path
        try DatabaseQueue(path: path).write {
            try $0.execute(sql: "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x')")
        }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let error = try #require(throws: StoreError.self) { try AppDatabase.open(path: path) }
        #expect(
            error.description.hasSuffix(
                "other.sqlite is not an authtap capture database (it has other tables, not authtap's)"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes)
        // A GRDB database of another app (its own migrations) is not ours either.
        let grdb = dir.appendingPathComponent("grdb.sqlite").path
        try DatabaseQueue(path: grdb).write { db in
            try db.execute(
                sql: """
                    CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                    INSERT INTO grdb_migrations VALUES ('v1');
                    """)
            try db.execute(sql: "CREATE TABLE player (id INTEGER PRIMARY KEY)")
        }
        #expect(throws: StoreError.self) { try AppDatabase.open(path: grdb) }
    }

    /// A file cut short: opening or reading fails with one line naming the file, never a trap.
    @Test(arguments: [0.1, 0.3, 0.5, 0.7, 0.9])
    func truncatedFile(_ fraction: Double) throws {
        let dir = try CraftedDB.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.sqlite").path
        do {
            let db = try AppDatabase(try DatabaseQueue(path: path))
            let session = try db.startSession(version: "t", arguments: [], listen: nil)
            var rows = (0..<300).map(sampleExchange)
            for i in rows.indices { rows[i].sessionID = session.id }
            try db.insert(exchanges: rows, tunnels: [])
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let keep = Int(exactly: (Double(data.count) * fraction).rounded(.down)) ?? 0
        try data.prefix(keep).write(to: URL(fileURLWithPath: path))
        do {
            let db = try CraftedDB.open(path)
            try CraftedDB.readEverything(db)
            Issue.record("a file cut to \(keep) of \(data.count) bytes read without an error")
        } catch let error as StoreError {
            #expect(!error.description.contains("\n"))
            #expect(error.description.hasPrefix(path))
        }
    }

    /// A later authtap may add migrations and columns: this one still opens and reads the file.
    @Test func databaseFromAFutureVersion() throws {
        let dir = try CraftedDB.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.sqlite").path
        try CraftedDB.pristine(at: path)
        try CraftedDB.execute(
            path,
            """
            INSERT INTO grdb_migrations VALUES ('v99-future');
            ALTER TABLE exchange ADD COLUMN future_column TEXT;
            UPDATE exchange SET future_column = 'x';
            """)
        let db = try CraftedDB.open(path)
        try CraftedDB.readEverything(db)
        #expect(try db.exchanges().count == 3)
        #expect(db.readProblems.lines().isEmpty)
    }

    /// A table a future or older version dropped: the read fails with SQLite's one-line message.
    @Test func missingColumnIsAnErrorLineNotATrap() throws {
        let dir = try CraftedDB.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.sqlite").path
        try CraftedDB.pristine(at: path)
        try CraftedDB.execute(path, "DROP VIEW oauth_param; ALTER TABLE exchange DROP COLUMN end_ms;")
        let db = try CraftedDB.open(path)
        let error = try #require(throws: StoreError.self) { try db.exchanges() }
        #expect(error.description == "\(path): SQLite error 1: no such column: end_ms")
    }
}
