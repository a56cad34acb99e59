import AuthtapModel
import Foundation
import GRDB
import GRDBSQLite

extension AppDatabase {
    /// Inserts a batch of (already masked) exchanges and tunnels in one transaction.
    public func insert(exchanges: [Exchange], tunnels: [Tunnel]) throws {
        _ = try writer.write { db in
            try Self.insert(exchanges: exchanges, tunnels: tunnels, db: db)
        }
    }

    /// Returns the new exchange ids, in order.
    @discardableResult
    static func insert(exchanges: [Exchange], tunnels: [Tunnel], db: Database) throws -> [Int64] {
        let ids = try insert(exchanges: exchanges, db: db)
        try insert(tunnels: tunnels, db: db)
        return ids
    }

    private static func insert(exchanges: [Exchange], db: Database) throws -> [Int64] {
        var ids: [Int64] = []
        ids.reserveCapacity(exchanges.count)
        let ex = try db.cachedStatement(
            sql: """
                INSERT INTO exchange (session_id, connection_id, client_address, scheme, host, port, method, target,
                  http_version, status, request_headers, response_headers, request_body, request_body_size,
                  request_body_truncated, response_body, response_body_size, response_body_truncated, client_tls,
                  upstream_tls, insecure_upstream, connection_reused, started_at, connect_ms, tls_ms, request_sent_ms,
                  first_byte_ms, end_ms, error_kind, tls_failure, error_detail, oauth_roles, oauth_params,
                  request_body_encoding, request_body_decoded_size, request_body_note,
                  response_body_encoding, response_body_decoded_size, response_body_note)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                """)
        var tls = TLSJSONCache()
        // Each row's values are bound in place (SQLITE_STATIC) from one reused byte arena, through
        // the statement GRDB prepared and caches: GRDB's `StatementArguments` converts every value to
        // a `DatabaseValue` and binds text as SQLITE_TRANSIENT, so SQLite copies it again, and the
        // headers and params JSON would be turned into Strings first. That was a third of the insert.
        var row = RowBinder()
        let statement = ex.sqliteStatement
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        for e in exchanges {
            row.start()
            bind(e, to: &row, tls: &tls)
            let code = row.execute(statement)
            guard code == SQLITE_DONE else {
                throw DatabaseError(
                    resultCode: ResultCode(rawValue: code),
                    message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: ex.sql)
            }
            ids.append(db.lastInsertedRowID)
        }
        return ids
    }

    /// One exchange's values, in the column order of the INSERT above.
    private static func bind(_ e: Exchange, to row: inout RowBinder, tls: inout TLSJSONCache) {
        row.int(e.sessionID); row.int(Int64(bitPattern: e.connectionID)); row.text(e.clientAddress)
        row.text(e.scheme.rawValue); row.text(e.host); row.int(Int64(e.port)); row.text(e.method)
        row.text(e.target); row.text(e.httpVersion); row.int(e.status.map(Int64.init))
        row.json { JSONText.appendHeaders(e.requestHeaders, to: &$0) }
        row.json { JSONText.appendHeaders(e.responseHeaders, to: &$0) }
        row.blob(e.requestBody.bytes); row.int(Int64(e.requestBody.size)); row.bool(e.requestBody.truncated)
        row.blob(e.responseBody.bytes); row.int(Int64(e.responseBody.size)); row.bool(e.responseBody.truncated)
        row.text(tls.json(e.clientTLS)); row.text(tls.json(e.upstreamTLS))
        row.bool(e.insecureUpstream); row.bool(e.connectionReused)
        row.double(e.timings.start.timeIntervalSince1970); row.double(e.timings.connect); row.double(e.timings.tls)
        row.double(e.timings.requestSent); row.double(e.timings.firstByte); row.double(e.timings.end)
        row.text(e.error?.rawValue); row.text(e.tlsFailure?.rawValue); row.text(e.errorDetail)
        row.text(e.roles.isEmpty ? nil : e.roles.map { $0.rawValue }.joined(separator: ","))
        if e.oauthParams.isEmpty {
            row.text(nil)
        } else {
            row.json { JSONText.appendParams(e.oauthParams, to: &$0) }
        }
        for body in [e.requestBody, e.responseBody] {
            row.text(body.encoding); row.int(body.decodedSize.map(Int64.init)); row.text(body.note)
        }
    }

    private static func insert(tunnels: [Tunnel], db: Database) throws {
        let tu = try db.cachedStatement(
            sql: """
                INSERT INTO tunnel (session_id, connection_id, client_address, host, port, intercepted, started_at, duration_ms,
                  bytes_from_client, bytes_from_upstream, ending, error_kind, error_detail)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                """)
        for t in tunnels {
            try tu.execute(arguments: [
                t.sessionID, Int64(bitPattern: t.connectionID), t.clientAddress, t.host, t.port, t.intercepted,
                t.start.timeIntervalSince1970, t.durationMs, t.bytesFromClient, t.bytesFromUpstream, t.ending,
                t.error?.rawValue, t.errorDetail,
            ])
        }
    }

    /// Exchanges on one connection share their TLS facts: each distinct value is encoded once. Found by
    /// equality in a short list, not by hashing: the facts of one connection share their strings' storage,
    /// which compares at once, while a hash reads every byte (the certificate's too).
    private struct TLSJSONCache {
        private var recent: [(facts: TLSFacts, json: String?)] = []

        mutating func json(_ facts: TLSFacts?) -> String? {
            guard let facts else { return nil }
            for i in recent.indices.reversed() where recent[i].facts == facts { return recent[i].json }  // newest first
            let text = JSONText.encode(facts)
            if recent.count == 16 { recent.removeFirst() }
            recent.append((facts, text))
            return text
        }
    }

    /// Exchanges in id order, optionally for one session; `analyzable` keeps only those with an
    /// OAuth role or an error (what the analyzer reads). A damaged row is skipped and reported (`readProblems`).
    public func exchanges(session: Int64? = nil, limit: Int? = nil, analyzable: Bool = false, after: Int64? = nil)
        throws -> [Exchange]
    {
        try reading { db in
            var sql = "SELECT \(ExchangeColumn.selectList) FROM exchange"
            var args: StatementArguments = []
            var conditions: [String] = []
            if let session { conditions.append("session_id = ?"); args += [session] }
            if let after { conditions.append("id > ?"); args += [after] }
            if analyzable { conditions.append("(oauth_roles IS NOT NULL OR error_kind IS NOT NULL)") }
            if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
            sql += " ORDER BY id"
            if let limit { sql += " LIMIT ?"; args += [limit] }
            var tls = TLSFactsCache()
            var result: [Exchange] = []
            let cursor = try Row.fetchCursor(db, sql: sql, arguments: args)
            while let row = try cursor.next() {
                let r = StoredRow(row)
                do {
                    result.append(try exchange(r, tls: &tls))
                } catch let bad {
                    readProblems.skipped("exchange", id: r.label(ExchangeColumn.id), bad)
                }
            }
            return result
        }
    }

    /// One stored row as an `Exchange`; throws on a column that cannot be read as its type.
    private func exchange(_ r: StoredRow, tls: inout TLSFactsCache) throws -> Exchange {
        typealias C = ExchangeColumn
        var e = Exchange(
            connectionID: UInt64(bitPattern: try r.int64(C.connectionID)),
            clientAddress: try r.text(C.clientAddress),
            scheme: Scheme(rawValue: try r.text(C.scheme)) ?? .http, host: try r.text(C.host),
            port: try r.int(C.port), method: try r.text(C.method), target: try r.text(C.target),
            httpVersion: try r.text(C.httpVersion), start: try r.date(C.startedAt))
        e.id = try r.int64(C.id)
        e.sessionID = try r.optionalInt64(C.sessionID)
        e.status = try r.optionalInt(C.status)
        e.requestHeaders = JSONText.decodeHeaders(try r.text(C.requestHeaders))
        e.responseHeaders = JSONText.decodeHeaders(try r.text(C.responseHeaders))
        e.requestBody = try Self.body(
            r, C.requestBody, C.requestBodySize, C.requestBodyTruncated, C.requestBodyEncoding,
            C.requestBodyDecodedSize, C.requestBodyNote)
        e.responseBody = try Self.body(
            r, C.responseBody, C.responseBodySize, C.responseBodyTruncated, C.responseBodyEncoding,
            C.responseBodyDecodedSize, C.responseBodyNote)
        e.clientTLS = try tls.facts(r, C.clientTLS, problems: readProblems)
        e.upstreamTLS = try tls.facts(r, C.upstreamTLS, problems: readProblems)
        e.insecureUpstream = try r.bool(C.insecureUpstream)
        e.connectionReused = try r.bool(C.connectionReused)
        e.timings.connect = try r.optionalDouble(C.connectMs)
        e.timings.tls = try r.optionalDouble(C.tlsMs)
        e.timings.requestSent = try r.optionalDouble(C.requestSentMs)
        e.timings.firstByte = try r.optionalDouble(C.firstByteMs)
        e.timings.end = try r.optionalDouble(C.endMs)
        e.error = try r.optionalText(C.errorKind).flatMap(ErrorKind.init(rawValue:))
        e.tlsFailure = try r.optionalText(C.tlsFailure).flatMap(TLSFailureReason.init(rawValue:))
        e.errorDetail = try r.optionalText(C.errorDetail)
        e.roles = (try r.optionalText(C.oauthRoles) ?? "").split(separator: ",")
            .compactMap { OAuthRole(rawValue: String($0)) }
        e.oauthParams = JSONText.decodeParams(try r.optionalText(C.oauthParams))
        return e
    }

    /// One side's body from its six columns.
    private static func body(
        _ r: StoredRow, _ bytes: ExchangeColumn, _ size: ExchangeColumn, _ truncated: ExchangeColumn,
        _ encoding: ExchangeColumn, _ decodedSize: ExchangeColumn, _ note: ExchangeColumn
    ) throws -> CapturedBody {
        CapturedBody(
            bytes: try r.bytes(bytes), size: try r.count(size), truncated: try r.bool(truncated),
            encoding: try r.optionalText(encoding), decodedSize: try r.optionalCount(decodedSize),
            note: try r.optionalText(note))
    }

    /// Exchanges of one connection share TLS facts: each distinct text is decoded once.
    private struct TLSFactsCache {
        private var decoded: [String: TLSFacts] = [:]

        mutating func facts(_ r: StoredRow, _ column: ExchangeColumn, problems: ReadProblems) throws -> TLSFacts? {
            guard let text = try r.optionalText(column) else { return nil }
            if let hit = decoded[text] { return hit }
            guard let facts: TLSFacts = JSONText.decode(text) else {
                problems.defaulted(
                    "exchange", id: r.label(ExchangeColumn.id), column: column.name, found: "invalid JSON",
                    readAs: "none")
                return nil
            }
            if decoded.count < 4096 { decoded[text] = facts }
            return facts
        }
    }

    /// CONNECT tunnels in id order; a damaged row is skipped and reported (`readProblems`).
    public func tunnels(session: Int64? = nil) throws -> [Tunnel] {
        typealias C = TunnelColumn
        return try reading { db in
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT \(C.selectList) FROM tunnel" + (session == nil ? "" : " WHERE session_id = ?")
                    + " ORDER BY id",
                arguments: session == nil ? [] : [session])
            return rows.compactMap { row in
                let r = StoredRow(row)
                do {
                    var t = Tunnel(
                        connectionID: UInt64(bitPattern: try r.int64(C.connectionID)),
                        clientAddress: try r.text(C.clientAddress), host: try r.text(C.host),
                        port: try r.int(C.port), intercepted: try r.bool(C.intercepted),
                        start: try r.date(C.startedAt))
                    t.id = try r.int64(C.id)
                    t.sessionID = try r.optionalInt64(C.sessionID)
                    t.durationMs = try r.double(C.durationMs)
                    t.bytesFromClient = try r.count(C.bytesFromClient)
                    t.bytesFromUpstream = try r.count(C.bytesFromUpstream)
                    t.ending = try r.text(C.ending)
                    t.error = try r.optionalText(C.errorKind).flatMap(ErrorKind.init(rawValue:))
                    t.errorDetail = try r.optionalText(C.errorDetail)
                    return t
                } catch let bad {
                    readProblems.skipped("tunnel", id: r.label(C.id), bad)
                    return nil
                }
            }
        }
    }
}
