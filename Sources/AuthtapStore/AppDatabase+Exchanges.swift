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
        var ids: [Int64] = []
        ids.reserveCapacity(exchanges.count)
        let ex = try db.cachedStatement(sql: """
            INSERT INTO exchange (session_id, connection_id, client_address, scheme, host, port, method, target,
              http_version, status, request_headers, response_headers, request_body, request_body_size,
              request_body_truncated, response_body, response_body_size, response_body_truncated, client_tls,
              upstream_tls, insecure_upstream, connection_reused, started_at, connect_ms, tls_ms, request_sent_ms,
              first_byte_ms, end_ms, error_kind, tls_failure, error_detail, oauth_roles, oauth_params,
              request_body_encoding, request_body_decoded_size, request_body_note,
              response_body_encoding, response_body_decoded_size, response_body_note)
            VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
            """)
        // Exchanges on one connection share their TLS facts: encode each distinct value once. Found by
        // equality in a short list, not by hashing: the facts of one connection share their strings'
        // storage, which compares at once, while a hash reads every byte (the certificate's too).
        var tlsCache: [(facts: TLSFacts, json: String?)] = []
        func tlsJSON(_ facts: TLSFacts?) -> String? {
            guard let facts else { return nil }
            for i in tlsCache.indices.reversed() where tlsCache[i].facts == facts { return tlsCache[i].json } // newest first
            let text = JSONText.encode(facts)
            if tlsCache.count == 16 { tlsCache.removeFirst() }
            tlsCache.append((facts, text))
            return text
        }
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
            row.int(e.sessionID); row.int(Int64(bitPattern: e.connectionID)); row.text(e.clientAddress)
            row.text(e.scheme.rawValue); row.text(e.host); row.int(Int64(e.port)); row.text(e.method)
            row.text(e.target); row.text(e.httpVersion); row.int(e.status.map(Int64.init))
            row.json { JSONText.appendHeaders(e.requestHeaders, to: &$0) }
            row.json { JSONText.appendHeaders(e.responseHeaders, to: &$0) }
            row.blob(e.requestBody.bytes); row.int(Int64(e.requestBody.size)); row.bool(e.requestBody.truncated)
            row.blob(e.responseBody.bytes); row.int(Int64(e.responseBody.size)); row.bool(e.responseBody.truncated)
            row.text(tlsJSON(e.clientTLS)); row.text(tlsJSON(e.upstreamTLS))
            row.bool(e.insecureUpstream); row.bool(e.connectionReused)
            row.double(e.timings.start.timeIntervalSince1970); row.double(e.timings.connect); row.double(e.timings.tls)
            row.double(e.timings.requestSent); row.double(e.timings.firstByte); row.double(e.timings.end)
            row.text(e.error?.rawValue); row.text(e.tlsFailure?.rawValue); row.text(e.errorDetail)
            row.text(e.roles.isEmpty ? nil : e.roles.map { $0.rawValue }.joined(separator: ","))
            if e.oauthParams.isEmpty { row.text(nil) } else { row.json { JSONText.appendParams(e.oauthParams, to: &$0) } }
            for body in [e.requestBody, e.responseBody] {
                row.text(body.encoding); row.int(body.decodedSize.map(Int64.init)); row.text(body.note)
            }
            let code = row.execute(statement)
            guard code == SQLITE_DONE else {
                throw DatabaseError(resultCode: ResultCode(rawValue: code),
                                    message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: ex.sql)
            }
            ids.append(db.lastInsertedRowID)
        }
        let tu = try db.cachedStatement(sql: """
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
        return ids
    }

    /// Exchanges in id order, optionally for one session; `analyzable` keeps only those with an
    /// OAuth role or an error (what the analyzer reads). A damaged row is skipped and reported (`readProblems`).
    public func exchanges(session: Int64? = nil, limit: Int? = nil, analyzable: Bool = false, after: Int64? = nil) throws -> [Exchange] {
        try reading { db in
            // Columns by position, in this order: name lookups dominate the cost of large loads.
            var sql = """
                SELECT id, session_id, connection_id, client_address, scheme, host, port, method, target, http_version, status,
                  request_headers, response_headers, request_body, request_body_size, response_body, response_body_size,
                  client_tls, upstream_tls, insecure_upstream, connection_reused, started_at, connect_ms, tls_ms,
                  request_sent_ms, first_byte_ms, end_ms, error_kind, tls_failure, error_detail, oauth_roles, oauth_params,
                  request_body_truncated, request_body_encoding, request_body_decoded_size, request_body_note,
                  response_body_truncated, response_body_encoding, response_body_decoded_size, response_body_note
                FROM exchange
                """
            var args: StatementArguments = []
            var conditions: [String] = []
            if let session { conditions.append("session_id = ?"); args += [session] }
            if let after { conditions.append("id > ?"); args += [after] }
            if analyzable { conditions.append("(oauth_roles IS NOT NULL OR error_kind IS NOT NULL)") }
            if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
            sql += " ORDER BY id"
            if let limit { sql += " LIMIT ?"; args += [limit] }
            // Exchanges of one connection share TLS facts: decode each distinct text once.
            var tlsCache: [String: TLSFacts] = [:]
            func tls(_ r: StoredRow, _ i: Int, _ column: String) throws -> TLSFacts? {
                guard let text = try r.optionalText(i, column) else { return nil }
                if let hit = tlsCache[text] { return hit }
                guard let facts: TLSFacts = JSONText.decode(text) else {
                    readProblems.defaulted("exchange", id: r.label(0), column: column, found: "invalid JSON",
                                           readAs: "none")
                    return nil
                }
                if tlsCache.count < 4096 { tlsCache[text] = facts }
                return facts
            }
            var result: [Exchange] = []
            let cursor = try Row.fetchCursor(db, sql: sql, arguments: args)
            while let row = try cursor.next() {
                let r = StoredRow(row)
                do {
                    var e = Exchange(
                        connectionID: UInt64(bitPattern: try r.int64(2, "connection_id")),
                        clientAddress: try r.text(3, "client_address"),
                        scheme: Scheme(rawValue: try r.text(4, "scheme")) ?? .http, host: try r.text(5, "host"),
                        port: try r.int(6, "port"), method: try r.text(7, "method"), target: try r.text(8, "target"),
                        httpVersion: try r.text(9, "http_version"), start: try r.date(21, "started_at"))
                    e.id = try r.int64(0, "id")
                    e.sessionID = try r.optionalInt64(1, "session_id")
                    e.status = try r.optionalInt(10, "status")
                    e.requestHeaders = JSONText.decodeHeaders(try r.text(11, "request_headers"))
                    e.responseHeaders = JSONText.decodeHeaders(try r.text(12, "response_headers"))
                    e.requestBody = CapturedBody(
                        bytes: try r.bytes(13, "request_body"), size: try r.count(14, "request_body_size"),
                        truncated: try r.bool(32, "request_body_truncated"),
                        encoding: try r.optionalText(33, "request_body_encoding"),
                        decodedSize: try r.optionalCount(34, "request_body_decoded_size"),
                        note: try r.optionalText(35, "request_body_note"))
                    e.responseBody = CapturedBody(
                        bytes: try r.bytes(15, "response_body"), size: try r.count(16, "response_body_size"),
                        truncated: try r.bool(36, "response_body_truncated"),
                        encoding: try r.optionalText(37, "response_body_encoding"),
                        decodedSize: try r.optionalCount(38, "response_body_decoded_size"),
                        note: try r.optionalText(39, "response_body_note"))
                    e.clientTLS = try tls(r, 17, "client_tls")
                    e.upstreamTLS = try tls(r, 18, "upstream_tls")
                    e.insecureUpstream = try r.bool(19, "insecure_upstream")
                    e.connectionReused = try r.bool(20, "connection_reused")
                    e.timings.connect = try r.optionalDouble(22, "connect_ms")
                    e.timings.tls = try r.optionalDouble(23, "tls_ms")
                    e.timings.requestSent = try r.optionalDouble(24, "request_sent_ms")
                    e.timings.firstByte = try r.optionalDouble(25, "first_byte_ms")
                    e.timings.end = try r.optionalDouble(26, "end_ms")
                    e.error = try r.optionalText(27, "error_kind").flatMap(ErrorKind.init(rawValue:))
                    e.tlsFailure = try r.optionalText(28, "tls_failure").flatMap(TLSFailureReason.init(rawValue:))
                    e.errorDetail = try r.optionalText(29, "error_detail")
                    e.roles = (try r.optionalText(30, "oauth_roles") ?? "").split(separator: ",")
                        .compactMap { OAuthRole(rawValue: String($0)) }
                    e.oauthParams = JSONText.decodeParams(try r.optionalText(31, "oauth_params"))
                    result.append(e)
                } catch let bad {
                    readProblems.skipped("exchange", id: r.label(0), bad)
                }
            }
            return result
        }
    }

    /// CONNECT tunnels in id order; a damaged row is skipped and reported (`readProblems`).
    public func tunnels(session: Int64? = nil) throws -> [Tunnel] {
        try reading { db in
            let rows = try Row.fetchAll(
                db, sql: """
                    SELECT id, session_id, connection_id, client_address, host, port, intercepted, started_at,
                      duration_ms, bytes_from_client, bytes_from_upstream, ending, error_kind, error_detail
                    FROM tunnel
                    """ + (session == nil ? "" : " WHERE session_id = ?") + " ORDER BY id",
                arguments: session == nil ? [] : [session])
            return rows.compactMap { row in
                let r = StoredRow(row)
                do {
                    var t = Tunnel(
                        connectionID: UInt64(bitPattern: try r.int64(2, "connection_id")),
                        clientAddress: try r.text(3, "client_address"), host: try r.text(4, "host"),
                        port: try r.int(5, "port"), intercepted: try r.bool(6, "intercepted"),
                        start: try r.date(7, "started_at"))
                    t.id = try r.int64(0, "id")
                    t.sessionID = try r.optionalInt64(1, "session_id")
                    t.durationMs = try r.double(8, "duration_ms")
                    t.bytesFromClient = try r.count(9, "bytes_from_client")
                    t.bytesFromUpstream = try r.count(10, "bytes_from_upstream")
                    t.ending = try r.text(11, "ending")
                    t.error = try r.optionalText(12, "error_kind").flatMap(ErrorKind.init(rawValue:))
                    t.errorDetail = try r.optionalText(13, "error_detail")
                    return t
                } catch let bad {
                    readProblems.skipped("tunnel", id: r.label(0), bad)
                    return nil
                }
            }
        }
    }
}

/// One row's values for the exchange insert: scalars kept as they are, text and blobs appended to
/// one byte arena (reused from row to row) and bound in place once the row is complete.
struct RowBinder {
    enum Slot {
        case null
        case int(Int64)
        case double(Double)
        case text(offset: Int, count: Int)
        case blob(offset: Int, count: Int)
    }
    private var slots: [Slot] = []
    private var arena: [UInt8] = []

    mutating func start() {
        slots.removeAll(keepingCapacity: true)
        arena.removeAll(keepingCapacity: true)
        // Never empty: an empty text then still points into the arena (a null pointer would bind NULL).
        arena.append(0)
    }
    mutating func int(_ v: Int64?) { slots.append(v.map { .int($0) } ?? .null) }
    mutating func bool(_ v: Bool) { slots.append(.int(v ? 1 : 0)) }
    mutating func double(_ v: Double?) { slots.append(v.map { .double($0) } ?? .null) }
    mutating func text(_ v: String?) {
        guard let v else { return slots.append(.null) }
        let offset = arena.count
        arena.append(contentsOf: v.utf8)
        slots.append(.text(offset: offset, count: arena.count - offset))
    }
    /// Text written straight into the arena (the headers and params JSON).
    mutating func json(_ write: (inout [UInt8]) -> Void) {
        let offset = arena.count
        write(&arena)
        slots.append(.text(offset: offset, count: arena.count - offset))
    }
    /// An empty body is stored as NULL.
    mutating func blob(_ v: [UInt8]) {
        if v.isEmpty { return slots.append(.null) }
        let offset = arena.count
        arena.append(contentsOf: v)
        slots.append(.blob(offset: offset, count: v.count))
    }

    /// Binds every slot (1-based, in order) and steps once; returns SQLite's result code.
    func execute(_ statement: SQLiteStatement) -> Int32 {
        sqlite3_reset(statement)
        return arena.withUnsafeBufferPointer { buffer -> Int32 in
            let base = buffer.baseAddress!
            // SQLite's lengths are Int32: a row that large is refused with SQLITE_TOOBIG, not a trap.
            guard buffer.count <= Int(Int32.max) else { return SQLITE_TOOBIG }
            for (i, slot) in slots.enumerated() {
                let index = Int32(i + 1)
                let code: Int32
                switch slot {
                case .null: code = sqlite3_bind_null(statement, index)
                case .int(let v): code = sqlite3_bind_int64(statement, index, v)
                case .double(let v): code = sqlite3_bind_double(statement, index, v)
                case .text(let offset, let count):
                    // nil destructor = SQLITE_STATIC: the arena outlives the step.
                    code = (base + offset).withMemoryRebound(to: CChar.self, capacity: max(count, 1)) {
                        sqlite3_bind_text(statement, index, $0, Int32(count), nil)
                    }
                case .blob(let offset, let count):
                    code = sqlite3_bind_blob(statement, index, base + offset, Int32(count), nil)
                }
                if code != SQLITE_OK { return code }
            }
            return sqlite3_step(statement)
        }
    }
}

/// Compact JSON for header lists and TLS facts.
enum JSONText {
    static func headers(_ headers: [HeaderField]) -> String {
        var out: [UInt8] = []
        appendHeaders(headers, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `[["name","value"],…]` appended to `out`.
    static func appendHeaders(_ headers: [HeaderField], to out: inout [UInt8]) {
        appendRows(headers, to: &out) { h, field in
            field(h.name)
            field(h.value)
        }
    }

    /// A JSON array of string arrays, one per row, with the strings `fields` gives for it.
    static func appendRows<Row>(_ rows: [Row], to out: inout [UInt8], fields: (Row, (String) -> Void) -> Void) {
        var bound = 2 // `[` `]`, then per row `[` `]` `,` and per string its worst case and a `,`
        for row in rows {
            bound += 3
            fields(row) { bound += Writer.quotedBound($0) + 1 }
        }
        Writer.append(to: &out, bound: bound) { w in
            w.byte(UInt8(ascii: "["))
            for (i, row) in rows.enumerated() {
                if i > 0 { w.byte(UInt8(ascii: ",")) }
                w.byte(UInt8(ascii: "["))
                var first = true
                fields(row) { text in
                    if !first { w.byte(UInt8(ascii: ",")) }
                    first = false
                    w.quoted(text)
                }
                w.byte(UInt8(ascii: "]"))
            }
            w.byte(UInt8(ascii: "]"))
        }
    }

    /// `[["location","name","value"(,"fingerprint")],…]`, the shape the `oauth_param` view reads.
    /// Arrays, not objects: member names would repeat in every entry of what is the largest column of
    /// a row, and every byte of it is inserted, logged and checkpointed.
    static func params(_ params: [OAuthParam]) -> String {
        var out: [UInt8] = []
        appendParams(params, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func appendParams(_ params: [OAuthParam], to out: inout [UInt8]) {
        appendRows(params, to: &out) { p, field in
            field(p.location.rawValue)
            field(p.name)
            field(p.value)
            if let fp = p.fingerprint { field(fp) }
        }
    }

    /// A JSON string literal appended to `out`.
    static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        Writer.append(to: &out, bound: Writer.quotedBound(s)) { $0.quoted(s) }
    }

    /// Writes JSON text into a buffer sized for the worst case up front, then appends it once.
    /// Appending byte by byte to an array paid a uniqueness and capacity check per byte and a
    /// generic copy per string: writing the headers and params columns took about as many
    /// instructions as SQLite's whole insert of the row.
    struct Writer {
        private let base: UnsafeMutablePointer<UInt8>
        private let capacity: Int
        private(set) var count = 0

        /// Room for `s` quoted in the worst case (every byte a `\u00XX` escape).
        static func quotedBound(_ s: String) -> Int { 2 + 6 * s.utf8.count }

        /// Appends to `out` what `body` writes; `body` must stay within `bound` bytes (checked per write).
        static func append(to out: inout [UInt8], bound: Int, _ body: (inout Writer) -> Void) {
            let bytes = [UInt8](unsafeUninitializedCapacity: bound) { buffer, initialized in
                var writer = Writer(base: buffer.baseAddress!, capacity: buffer.count)
                body(&writer)
                initialized = writer.count
            }
            out.append(contentsOf: bytes)
        }

        private init(base: UnsafeMutablePointer<UInt8>, capacity: Int) {
            self.base = base
            self.capacity = capacity
        }

        mutating func byte(_ b: UInt8) {
            precondition(count < capacity)
            base[count] = b
            count += 1
        }

        mutating func quoted(_ s: String) {
            var s = s
            s.withUTF8 { quoted(bytes: $0) }
        }

        /// Runs of plain bytes are copied whole; `"`, `\\` and control bytes are escaped.
        mutating func quoted(bytes b: UnsafeBufferPointer<UInt8>) {
            precondition(count + 2 + 6 * b.count <= capacity)
            base[count] = UInt8(ascii: "\"")
            count += 1
            var run = 0
            var i = Self.plainPrefix(b, from: 0)
            while i < b.count {
                let c = b[i]
                guard Self.needsEscape(c) else {
                    i = Self.plainPrefix(b, from: i + 1)
                    continue
                }
                copy(b, run..<i)
                run = i + 1
                i += 1
                base[count] = UInt8(ascii: "\\")
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): base[count + 1] = c; count += 2
                case 0x0A: base[count + 1] = UInt8(ascii: "n"); count += 2
                case 0x0D: base[count + 1] = UInt8(ascii: "r"); count += 2
                case 0x09: base[count + 1] = UInt8(ascii: "t"); count += 2
                default:
                    base[count + 1] = UInt8(ascii: "u")
                    base[count + 2] = UInt8(ascii: "0")
                    base[count + 3] = UInt8(ascii: "0")
                    base[count + 4] = JSONText.hexDigit(c >> 4)
                    base[count + 5] = JSONText.hexDigit(c & 0xF)
                    count += 6
                }
            }
            copy(b, run..<b.count)
            base[count] = UInt8(ascii: "\"")
            count += 1
        }

        static func needsEscape(_ c: UInt8) -> Bool { c < 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") }

        /// Skips whole 8-byte words in which no byte needs an escape (nearly all of them), and returns
        /// where the first word that may hold one starts; the caller looks at that word byte by byte.
        static func plainPrefix(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
            guard let base = b.baseAddress else { return start }
            let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
            var i = start
            while i + 8 <= b.count {
                let x = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
                // A byte below 0x20, or equal to `"` or `\\` (a zero byte after the XOR): exact tests for "any".
                let control = (x &- 0x20 &* ones) & ~x & highs
                let q = x ^ (0x22 &* ones), s = x ^ (0x5C &* ones)
                let special = control | ((q &- ones) & ~q & highs) | ((s &- ones) & ~s & highs)
                if special != 0 { return i }
                i += 8
            }
            return i
        }

        private mutating func copy(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
            guard !range.isEmpty, let source = b.baseAddress else { return }
            (base + count).update(from: source + range.lowerBound, count: range.count)
            count += range.count
        }
    }

    static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? UInt8(ascii: "0") + v : UInt8(ascii: "a") + v - 10 }

    /// `[["name","value"],…]` as `headers(_:)` writes it, read by a token scanner: large loads
    /// (the analyzer, the TUI) read every row, and a general JSON parse dominated their time.
    static func decodeHeaders(_ text: String) -> [HeaderField] {
        var result: [HeaderField] = []
        var pending: String? = nil
        scanStrings(text) { s, _ in
            if let name = pending {
                result.append(HeaderField(name, s))
                pending = nil
            } else {
                pending = s
            }
        }
        return result
    }

    /// The params column as `params(_:)` writes it, `[["location","name","value","fingerprint"?],…]`,
    /// or as capture files written before v5 hold it, `[{"location":…,"name":…,"value":…,"fingerprint":…},…]`.
    static func decodeParams(_ text: String?) -> [OAuthParam] {
        guard let text else { return [] }
        var result: [OAuthParam] = []
        let arrays = text.utf8.dropFirst().first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) == UInt8(ascii: "[")
        if arrays {
            var fields: [String] = []
            scanStrings(text) { s, endOfContainer in
                fields.append(s)
                if endOfContainer {
                    if fields.count >= 3 {
                        result.append(OAuthParam(location: ParamLocation(rawValue: fields[0]), name: fields[1], value: fields[2], fingerprint: fields.count > 3 ? fields[3] : nil))
                    }
                    fields.removeAll(keepingCapacity: true)
                }
            }
            return result
        }
        var key: String? = nil
        var fields: [String: String] = [:]
        scanStrings(text) { s, endOfObject in
            if let k = key {
                fields[k] = s
                key = nil
            } else {
                key = s
            }
            if endOfObject {
                if let location = fields["location"], let name = fields["name"], let value = fields["value"] {
                    result.append(OAuthParam(location: ParamLocation(rawValue: location), name: name, value: value,
                                              fingerprint: fields["fingerprint"]))
                }
                fields.removeAll(keepingCapacity: true)
                key = nil
            }
        }
        return result
    }

    /// Calls `emit` with every JSON string literal in order; the flag is true for the last string
    /// before a `}` or `]` (the end of the object or array that holds it).
    private static func scanStrings(_ text: String, _ emit: (String, Bool) -> Void) {
        var text = text
        text.withUTF8 { b in
            var i = 0
            var last: String? = nil
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") {
                    var j = i + 1
                    var escaped = false
                    while j < b.count, b[j] != UInt8(ascii: "\"") {
                        if b[j] == UInt8(ascii: "\\") { escaped = true; j += 1 }
                        j += 1
                    }
                    let end = min(j, b.count)
                    let s: String
                    if escaped {
                        let quoted = Array(b[i...min(j, b.count - 1)])
                        s = (try? JSONDecoder().decode(String.self, from: Data(quoted))) ?? String(decoding: b[(i + 1)..<end], as: UTF8.self)
                    } else {
                        s = String(decoding: UnsafeBufferPointer(rebasing: b[(i + 1)..<end]), as: UTF8.self)
                    }
                    if let previous = last { emit(previous, false) }
                    last = s
                    i = j + 1
                    continue
                }
                if c == UInt8(ascii: "}") || c == UInt8(ascii: "]"), let previous = last {
                    emit(previous, true)
                    last = nil
                }
                i += 1
            }
            if let previous = last { emit(previous, false) }
        }
    }

    static func encode<T: Encodable>(_ value: T?) -> String? {
        guard let value else { return nil }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) }
    }

    static func decode<T: Decodable>(_ text: String?) -> T? {
        guard let text else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(T.self, from: Data(text.utf8))
    }
}
