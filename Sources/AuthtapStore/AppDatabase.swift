import AuthtapModel
import Foundation
import GRDB

/// The capture store: owns the `DatabaseWriter` and runs the migrator on open.
public final class AppDatabase: Sendable {
    public let writer: any DatabaseWriter
    /// Rows that reads skipped because a column held what it cannot hold (see `StoredRow`).
    public let readProblems: ReadProblems

    /// Refuses a database that is not authtap's (see `checkIsAuthtap`), then migrates it. `echoProblems` prints
    /// skipped rows on standard error as reads find them.
    public init(_ writer: any DatabaseWriter, echoProblems: Bool = false) throws {
        self.writer = writer
        readProblems = ReadProblems(source: writer.path, echo: echoProblems)
        do {
            try writer.read { db in try Self.checkIsAuthtap(db, path: writer.path) }
            try Self.migrator.migrate(writer)
        } catch {
            throw StoreError.wrap(error, path: writer.path)
        }
    }

    /// A WAL database file (creating its directory), private to its owner: see `prepareOwnerOnly`.
    /// A file that is not SQLite, is damaged, or is another program's database throws a one-line `StoreError`
    /// before anything is written to it.
    public static func open(path: String) throws -> AppDatabase {
        try prepareOwnerOnly(databasePath: path)
        var config = Configuration()
        config.busyMode = .timeout(5)
        // WAL + NORMAL: a commit survives a crash of authtap (Ctrl-C, kill); only power loss can undo the last ones.
        // 32 KiB pages: rows of a few KB and 1 MiB body prefixes are appended in batches, and with
        // small pages the WAL's and the checkpoint's per-page writes dominate an insert (measured in
        // docs/performance.md). It only takes effect when the file is created; an existing database
        // keeps its page size.
        config.prepareDatabase { db in
            // On the writer, before GRDB switches the file to WAL: another program's database is left as it was.
            if !db.configuration.readonly { try checkIsAuthtap(db, path: path) }
            try db.execute(sql: "PRAGMA page_size = 32768; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16384")
        }
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw StoreError.wrap(error, path: path)
        }
        tightenDatabaseFiles(path)
        return try AppDatabase(pool, echoProblems: true)
    }

    /// An empty file becomes a new capture database; one with tables must have authtap's first migration and
    /// its two main tables, so that another program's database is never migrated into.
    static func checkIsAuthtap(_ db: Database, path: String) throws {
        let names = try Row.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'")
            .compactMap { row -> String? in
                if case .string(let s) = (row[0] as DatabaseValue).storage { return s }
                return nil
            }
        let tables = Set(names)
        if tables.isEmpty { return }
        guard tables.isSuperset(of: ["grdb_migrations", "session", "exchange"]) else {
            throw StoreError.notAuthtap(path)
        }
        let applied = try Row.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations").compactMap { row -> String? in
            if case .string(let s) = (row[0] as DatabaseValue).storage { return s }
            return nil
        }
        guard applied.contains("v1") else { throw StoreError.notAuthtap(path) }
    }

    /// An in-memory database for tests.
    public static func inMemory() throws -> AppDatabase {
        try AppDatabase(DatabaseQueue())
    }

    /// Migrations name tables as strings; once shipped, a migration never changes.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE session (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        started_at DOUBLE NOT NULL,
                        ended_at DOUBLE,
                        version TEXT NOT NULL,
                        arguments TEXT NOT NULL,
                        listen TEXT,
                        recorded INTEGER NOT NULL DEFAULT 0,
                        dropped INTEGER NOT NULL DEFAULT 0
                    );
                    CREATE TABLE exchange (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        session_id INTEGER REFERENCES session(id) ON DELETE CASCADE,
                        connection_id INTEGER NOT NULL,
                        client_address TEXT NOT NULL,
                        scheme TEXT NOT NULL,
                        host TEXT NOT NULL,
                        port INTEGER NOT NULL,
                        method TEXT NOT NULL,
                        target TEXT NOT NULL,
                        http_version TEXT NOT NULL,
                        status INTEGER,
                        request_headers TEXT NOT NULL,
                        response_headers TEXT NOT NULL,
                        request_body BLOB,
                        request_body_size INTEGER NOT NULL,
                        request_body_truncated BOOLEAN NOT NULL,
                        response_body BLOB,
                        response_body_size INTEGER NOT NULL,
                        response_body_truncated BOOLEAN NOT NULL,
                        client_tls TEXT,
                        upstream_tls TEXT,
                        insecure_upstream BOOLEAN NOT NULL,
                        connection_reused BOOLEAN NOT NULL,
                        started_at DOUBLE NOT NULL,
                        connect_ms DOUBLE,
                        tls_ms DOUBLE,
                        request_sent_ms DOUBLE,
                        first_byte_ms DOUBLE,
                        end_ms DOUBLE,
                        error_kind TEXT,
                        tls_failure TEXT,
                        error_detail TEXT,
                        oauth_roles TEXT,
                        oauth_params TEXT
                    );
                    CREATE INDEX exchange_session ON exchange(session_id, id);
                    CREATE INDEX exchange_host ON exchange(host);
                    -- OAuth parameters are stored with their exchange as a JSON array (one write instead of a
                    -- row each) and queried through this view like a table.
                    CREATE VIEW oauth_param AS
                        SELECT exchange.id AS exchange_id, exchange.session_id AS session_id, p.key AS position,
                               p.value ->> '$.location' AS location, p.value ->> '$.name' AS name,
                               p.value ->> '$.value' AS value, p.value ->> '$.fingerprint' AS fingerprint
                        FROM exchange, json_each(exchange.oauth_params) AS p
                        WHERE exchange.oauth_params IS NOT NULL;
                    CREATE TABLE tunnel (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        session_id INTEGER REFERENCES session(id) ON DELETE CASCADE,
                        connection_id INTEGER NOT NULL,
                        client_address TEXT NOT NULL,
                        host TEXT NOT NULL,
                        port INTEGER NOT NULL,
                        intercepted BOOLEAN NOT NULL,
                        started_at DOUBLE NOT NULL,
                        duration_ms DOUBLE NOT NULL,
                        bytes_from_client INTEGER NOT NULL,
                        bytes_from_upstream INTEGER NOT NULL,
                        ending TEXT NOT NULL,
                        error_kind TEXT,
                        error_detail TEXT
                    );
                    CREATE INDEX tunnel_session ON tunnel(session_id, id);
                    """)
        }
        m.registerMigration("v2-analysis") { db in
            try db.execute(
                sql: """
                    CREATE TABLE oauth_transaction (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        session_id INTEGER NOT NULL REFERENCES session(id) ON DELETE CASCADE,
                        number INTEGER NOT NULL,
                        client_id TEXT,
                        server_host TEXT,
                        grant_type TEXT,
                        state TEXT,
                        started_at DOUBLE NOT NULL,
                        outcome TEXT NOT NULL,
                        UNIQUE (session_id, number)
                    );
                    CREATE TABLE transaction_member (
                        transaction_id INTEGER NOT NULL REFERENCES oauth_transaction(id) ON DELETE CASCADE,
                        exchange_id INTEGER NOT NULL,
                        leg TEXT NOT NULL,
                        PRIMARY KEY (transaction_id, exchange_id)
                    );
                    CREATE INDEX transaction_member_exchange ON transaction_member(exchange_id);
                    CREATE TABLE finding (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        session_id INTEGER NOT NULL REFERENCES session(id) ON DELETE CASCADE,
                        transaction_id INTEGER REFERENCES oauth_transaction(id) ON DELETE CASCADE,
                        rule TEXT NOT NULL,
                        severity TEXT NOT NULL,
                        title TEXT NOT NULL,
                        explanation TEXT NOT NULL,
                        fix TEXT NOT NULL,
                        evidence TEXT NOT NULL,
                        exchanges TEXT NOT NULL
                    );
                    CREATE INDEX finding_session ON finding(session_id, severity);
                    CREATE INDEX finding_rule ON finding(rule);
                    CREATE TABLE finding_exchange (
                        finding_id INTEGER NOT NULL REFERENCES finding(id) ON DELETE CASCADE,
                        exchange_id INTEGER NOT NULL,
                        PRIMARY KEY (finding_id, exchange_id)
                    );
                    CREATE INDEX finding_exchange_exchange ON finding_exchange(exchange_id);
                    CREATE INDEX exchange_session_roles ON exchange(session_id, id) WHERE oauth_roles IS NOT NULL OR error_kind IS NOT NULL;
                    """)
        }
        m.registerMigration("v3-handshakes") { db in
            try db.execute(
                sql: """
                    CREATE TABLE handshake (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        session_id INTEGER NOT NULL REFERENCES session(id) ON DELETE CASCADE,
                        client TEXT NOT NULL, client_port INTEGER NOT NULL,
                        server TEXT NOT NULL, server_port INTEGER NOT NULL,
                        outcome TEXT NOT NULL, side TEXT, alert TEXT, encrypted_alert BOOLEAN NOT NULL,
                        sni TEXT, started_at DOUBLE NOT NULL, ended_at DOUBLE NOT NULL, duration_ms DOUBLE,
                        first_packet INTEGER NOT NULL, last_packet INTEGER NOT NULL,
                        detail TEXT NOT NULL,
                        facts TEXT NOT NULL
                    );
                    CREATE INDEX handshake_session ON handshake(session_id, id);
                    CREATE INDEX handshake_server ON handshake(server, server_port, started_at);
                    """)
        }
        m.registerMigration("v4-browse-indexes") { db in
            try db.execute(
                sql: """
                    CREATE INDEX finding_transaction ON finding(transaction_id);
                    CREATE INDEX oauth_transaction_session ON oauth_transaction(session_id, number);
                    """)
        }
        m.registerMigration("v5-compact-params") { db in
            // New rows keep each parameter as an array [location, name, value, fingerprint?] instead of
            // an object; rows written before stay as they are, so the view reads both.
            try db.execute(
                sql: """
                    DROP VIEW oauth_param;
                    CREATE VIEW oauth_param AS
                        SELECT exchange.id AS exchange_id, exchange.session_id AS session_id, p.key AS position,
                               CASE p.type WHEN 'array' THEN p.value ->> 0 ELSE p.value ->> '$.location' END AS location,
                               CASE p.type WHEN 'array' THEN p.value ->> 1 ELSE p.value ->> '$.name' END AS name,
                               CASE p.type WHEN 'array' THEN p.value ->> 2 ELSE p.value ->> '$.value' END AS value,
                               CASE p.type WHEN 'array' THEN p.value ->> 3 ELSE p.value ->> '$.fingerprint' END AS fingerprint
                        FROM exchange, json_each(exchange.oauth_params) AS p
                        WHERE exchange.oauth_params IS NOT NULL;
                    """)
        }
        m.registerMigration("v6-body-decoding") { db in
            // Recording decodes bodies (Content-Encoding, charset) before masking: what the body was on the
            // wire, its decoded size, and why nothing or only part of it is kept.
            try db.execute(
                sql: """
                    ALTER TABLE exchange ADD COLUMN request_body_encoding TEXT;
                    ALTER TABLE exchange ADD COLUMN request_body_decoded_size INTEGER;
                    ALTER TABLE exchange ADD COLUMN request_body_note TEXT;
                    ALTER TABLE exchange ADD COLUMN response_body_encoding TEXT;
                    ALTER TABLE exchange ADD COLUMN response_body_decoded_size INTEGER;
                    ALTER TABLE exchange ADD COLUMN response_body_note TEXT;
                    """)
        }
        m.registerMigration("v7-no-host-index") { db in
            // Every host filter is a substring match (`host LIKE '%…%'`), which no index serves, while each
            // recorded exchange paid for one more B-tree insert.
            try db.execute(sql: "DROP INDEX IF EXISTS exchange_host")
        }
        m.registerMigration("v8-root-cause") { db in
            // One root cause per failure, the generic findings it explains, and the candidates of a refusal.
            try db.execute(
                sql: """
                    ALTER TABLE finding ADD COLUMN root_cause BOOLEAN;
                    ALTER TABLE finding ADD COLUMN related TEXT;
                    ALTER TABLE finding ADD COLUMN candidates TEXT;
                    """)
        }
        m.registerMigration("v9-session-mode") { db in
            // Forward (HTTPS_PROXY) or reverse (listeners in front of named upstreams), and those upstreams.
            try db.execute(
                sql: """
                    ALTER TABLE session ADD COLUMN mode TEXT NOT NULL DEFAULT 'forward';
                    ALTER TABLE session ADD COLUMN upstreams TEXT;
                    """)
        }
        return m
    }
}
