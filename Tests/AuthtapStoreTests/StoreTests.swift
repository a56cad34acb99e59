import AuthtapModel
import Foundation
import GRDB
import Testing

@testable import AuthtapDissector
@testable import AuthtapStore

func sampleExchange(_ i: Int) -> Exchange {
    var e = Exchange(
        connectionID: UInt64(i), clientAddress: "127.0.0.1:5000", scheme: .https, host: "idp.test", port: 443,
        method: "POST", target: "/token?x=\(i)", start: Date(timeIntervalSince1970: 1_700_000_000 + Double(i)))
    e.status = 200
    e.requestHeaders = [
        HeaderField("Content-Type", "application/x-www-form-urlencoded"), HeaderField("X-Quote", "a\"b\\c\n"),
    ]
    e.responseHeaders = [HeaderField("Content-Type", "application/json")]
    e.requestBody = CapturedBody(bytes: Array("grant_type=client_credentials".utf8), size: 29)
    e.responseBody = CapturedBody(bytes: Array("{\"a\":1}".utf8), size: 5000)
    if i % 3 == 1 {
        // A gzip body decoded whole: the wire size, the coding and the decoded size are kept; not truncated
        // although the text is shorter than the wire size said.
        e.responseBody = CapturedBody(
            bytes: Array("{\"error\":\"invalid_grant\"}".utf8), size: 47, truncated: false,
            encoding: "gzip", decodedSize: 25, note: nil)
        e.requestBody.note = "converted from windows-1252"
    } else if i % 3 == 2 {
        e.responseBody = CapturedBody(
            bytes: [], size: 900, truncated: false, encoding: "br", decodedSize: nil,
            note: "body not decoded: corrupt brotli stream")
    }
    e.timings = Timings(start: e.timings.start, connect: 1, tls: 2, requestSent: 3, firstByte: 4, end: 5)
    e.clientTLS = TLSFacts(version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", alpn: "http/1.1", sni: "idp.test")
    e.upstreamTLS = TLSFacts(
        version: "TLSv1.3",
        peerCertificate: CertificateSummary(
            subject: "CN=idp", issuer: "CN=ca", sans: ["idp.test"],
            notBefore: Date(timeIntervalSince1970: 0), notAfter: Date(timeIntervalSince1970: 1e9), serial: "01"),
        verification: "verified")
    e.roles = [.token]
    e.oauthParams = [
        OAuthParam(location: .requestBody, name: "grant_type", value: "client_credentials"),
        OAuthParam(
            location: .requestBody, name: "client_secret", value: "[masked client_secret len=3 fp=abc]",
            fingerprint: "abc"),
    ]
    e.error = i % 2 == 0 ? nil : .upstreamTLS
    e.tlsFailure = i % 2 == 0 ? nil : .expired
    return e
}

/// What the store gives back: every body it holds went through recording, so it is decoded text.
func recorded(_ e: Exchange) -> Exchange {
    var e = e
    e.requestBody.decoded = true
    e.responseBody.decoded = true
    return e
}

@Suite struct StoreTests {
    @Test func exchangesRoundTrip() throws {
        let db = try AppDatabase.inMemory()
        let session = try db.startSession(version: "t", arguments: ["proxy"], listen: "127.0.0.1:0")
        var rows = (0..<3).map(sampleExchange)
        for i in rows.indices { rows[i].sessionID = session.id }
        var tunnel = Tunnel(
            connectionID: 9, clientAddress: "127.0.0.1:1", host: "relay.test", port: 443, intercepted: false,
            start: Date(timeIntervalSince1970: 5))
        tunnel.sessionID = session.id
        tunnel.bytesFromClient = 10
        tunnel.ending = "client-closed"
        try db.insert(exchanges: rows, tunnels: [tunnel])
        let back = try db.exchanges(session: session.id)
        #expect(back.count == 3)
        for (a, b) in zip(rows, back) {
            var b = b
            b.id = nil
            #expect(recorded(a) == b)
        }
        #expect(back[0].responseBody.truncated)
        // The parameters are queryable like a table, by fingerprint for instance.
        let hits = try db.writer.read { db in
            try Row.fetchAll(
                db, sql: "SELECT exchange_id, name, value FROM oauth_param WHERE fingerprint = ? ORDER BY exchange_id",
                arguments: ["abc"])
        }
        #expect(hits.count == 3 && hits.allSatisfy { ($0["name"] as String) == "client_secret" })
        #expect(
            try db.writer.read {
                try Int.fetchOne(
                    $0,
                    sql: "SELECT COUNT(*) FROM oauth_param WHERE name = 'grant_type' AND value = 'client_credentials'")
            } == 3)
        let tunnels = try db.tunnels(session: session.id)
        #expect(tunnels.count == 1 && tunnels[0].host == "relay.test" && tunnels[0].bytesFromClient == 10)
    }

    /// Edge shapes through the in-place binding: nils, empty text, empty and binary bodies, non-ASCII.
    static let edgeShapes: [(String, @Sendable (inout Exchange) -> Void)] = [
        (
            "failed attempt: no status, no headers, no bodies",
            { e in
                e.status = nil; e.requestHeaders = []; e.responseHeaders = []
                e.requestBody = CapturedBody(); e.responseBody = CapturedBody()
                e.timings = Timings(start: e.timings.start); e.clientTLS = nil; e.upstreamTLS = nil
                e.roles = []; e.oauthParams = []; e.error = .connectionRefused;
                e.errorDetail = "connect ECONNREFUSED 127.0.0.1:9"
            }
        ),
        (
            "empty strings",
            { e in
                e.target = ""; e.clientAddress = ""; e.errorDetail = ""; e.requestHeaders = [HeaderField("X-Empty", "")]
            }
        ),
        (
            "binary body with NUL bytes, truncated",
            { e in
                e.responseBody = CapturedBody(bytes: [0, 1, 2, 0, 255, 254, 0], size: 1 << 30)
            }
        ),
        (
            "non-ASCII everywhere",
            { e in
                e.host = "bücher.example"; e.target = "/pfad?q=ü€𝄞"; e.errorDetail = "fehlgeschlagen: ü"
                e.requestHeaders = [HeaderField("X-Name", "Zoë 𝄞")]
                e.oauthParams = [OAuthParam(location: .requestTargetQuery, name: "q", value: "ü€𝄞")]
            }
        ),
        (
            "a large body",
            { e in
                e.requestBody = CapturedBody(
                    bytes: (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }, size: 1 << 20)
            }
        ),
    ]

    @Test(arguments: edgeShapes.indices)
    func edgeShapesRoundTrip(_ index: Int) throws {
        let (name, shape) = Self.edgeShapes[index]
        let db = try AppDatabase.inMemory()
        let session = try db.startSession(version: "t", arguments: [], listen: nil)
        var rows = [sampleExchange(1), sampleExchange(2), sampleExchange(3)]
        shape(&rows[1])
        for i in rows.indices { rows[i].sessionID = session.id }
        try db.insert(exchanges: rows, tunnels: [])
        let back = try db.exchanges(session: session.id)
        #expect(back.count == 3, "\(name)")
        for (a, b) in zip(rows, back) {
            var b = b
            b.id = nil
            #expect(recorded(a) == b, "\(name)")
        }
    }

    /// A row SQLite refuses fails the batch with SQLite's message (the writer then counts it as dropped),
    /// and the cached statement keeps working for the next batch.
    @Test func aRefusedRowThrowsAndTheNextBatchStillInserts() throws {
        let db = try AppDatabase.inMemory()
        let session = try db.startSession(version: "t", arguments: [], listen: nil)
        try db.writer.write {
            try $0.execute(
                sql:
                    "CREATE TRIGGER refuse BEFORE INSERT ON exchange WHEN NEW.host = 'refused.test' BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            )
        }
        var bad = sampleExchange(1)
        bad.host = "refused.test"
        bad.sessionID = session.id
        #expect {
            try db.insert(exchanges: [bad], tunnels: [])
        } throws: { error in
            "\(error)".contains("refused by test")
        }
        var good = sampleExchange(2)
        good.sessionID = session.id
        try db.insert(exchanges: [good], tunnels: [])
        #expect(try db.exchanges(session: session.id).map(\.host) == ["idp.test"])
    }

    @Test func writerBatchesPreparesAndFlushesOnClose() throws {
        let db = try AppDatabase.inMemory()
        let session = try db.startSession(version: "t", arguments: [], listen: nil)
        let writer = CaptureWriter(
            database: db, sessionID: session.id!,
            prepare: { e in
                var e = e
                e.target = "/prepared"
                return e
            })
        for i in 0..<500 { writer.submit(sampleExchange(i)) }
        writer.close()
        let rows = try db.exchanges()
        #expect(rows.count == 500)
        #expect(rows.allSatisfy { $0.target == "/prepared" && $0.sessionID == session.id })
        let s = try db.sessions()[0]
        #expect(s.endedAt != nil && s.recorded == 500 && s.dropped == 0)
    }

    @Test func overflowIsDroppedAndCountedNeverSilent() throws {
        let db = try AppDatabase.inMemory()
        let session = try db.startSession(version: "t", arguments: [], listen: nil)
        // A writer that cannot keep up: each prepare takes a while, and the queue holds 10.
        let writer = CaptureWriter(
            database: db, sessionID: session.id!,
            limits: .init(maxPending: 10, maxPendingBytes: 1 << 30, batchSize: 10),
            prepare: { e in
                usleep(2000); return e
            })
        for i in 0..<200 { writer.submit(sampleExchange(i)) }
        writer.close()
        let stored = try db.exchanges().count
        let s = try db.sessions()[0]
        #expect(s.dropped > 0)
        #expect(stored + s.dropped == 200, "every exchange is either stored or counted as dropped")
    }

    /// The backpressure the proxy relies on: a writer that lags (here a slow, niced one) reports
    /// itself backed up while more than `highWater` exchanges wait, then catches up and loses none.
    @Test func aLaggingWriterBacksUpThenCatchesUpWithoutLoss() throws {
        let db = try AppDatabase.inMemory()
        let session = try db.startSession(version: "t", arguments: [], listen: nil)
        let writer = CaptureWriter(
            database: db, sessionID: session.id!, limits: .init(highWater: 5, niceness: 10),
            prepare: { e in
                usleep(5000); return e
            })
        for i in 0..<40 { writer.submit(sampleExchange(i)) }
        // Queued exchanges count until they are inserted, and preparing 40 takes at least 200 ms.
        #expect(writer.isBackedUp)
        let deadline = Date().addingTimeInterval(10)
        while writer.isBackedUp && Date() < deadline { usleep(2000) }
        #expect(!writer.isBackedUp)
        writer.close()
        #expect(try db.exchanges().count == 40)
        #expect(writer.droppedCount == 0)
        #expect(try db.sessions()[0].dropped == 0)
    }

    @Test func droppedExchangesDoNotHoldProducersBack() throws {
        let db = try AppDatabase.inMemory()
        let session = try db.startSession(version: "t", arguments: [], listen: nil)
        let writer = CaptureWriter(database: db, sessionID: session.id!, limits: .init(highWater: 5), prepare: { $0 })
        writer.close()
        // Refused after close: counted as dropped, and not left in the backlog that pauses the proxy.
        for i in 0..<20 { writer.submit(sampleExchange(i)) }
        #expect(writer.droppedCount == 20)
        #expect(!writer.isBackedUp)
        #expect(try db.exchanges().isEmpty)
    }

    /// Each index is one more B-tree insert per recorded exchange: the exchange table keeps only those a reader
    /// looks rows up by (a session's rows, its rows with roles), also in a capture written before v7.
    @Test func theExchangeTableKeepsOnlyTheSessionIndex() throws {
        let indexes = { (queue: DatabaseQueue) in
            try queue.read {
                try String.fetchAll(
                    $0,
                    sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'exchange' ORDER BY name")
            }
        }
        let queue = try DatabaseQueue()
        try AppDatabase.migrator.migrate(queue, upTo: "v6-body-decoding")
        #expect(try indexes(queue) == ["exchange_host", "exchange_session", "exchange_session_roles"])
        _ = try AppDatabase(queue)
        #expect(try indexes(queue) == ["exchange_session", "exchange_session_roles"])
    }

    /// Capture files written before v5 hold each parameter as an object; after the migration their
    /// rows still read back, through `exchanges` and the `oauth_param` view, next to new array rows.
    @Test func paramsWrittenBeforeV5StillRead() throws {
        let queue = try DatabaseQueue()
        try AppDatabase.migrator.migrate(queue, upTo: "v4-browse-indexes")
        let old =
            #"[{"location":"request.body","name":"grant_type","value":"client_credentials"},"#
            + #"{"location":"request.header.authorization","name":"client_secret","value":"[masked client_secret len=3 fp=abc]","fingerprint":"abc"}]"#
        try queue.write { db in
            try db.execute(
                sql:
                    "INSERT INTO session (started_at, version, arguments, recorded, dropped) VALUES (0, 'old', '[]', 1, 0)"
            )
            try db.execute(
                sql: """
                    INSERT INTO exchange (session_id, connection_id, client_address, scheme, host, port, method, target, http_version,
                      request_headers, response_headers, request_body_size, request_body_truncated, response_body_size,
                      response_body_truncated, insecure_upstream, connection_reused, started_at, oauth_roles, oauth_params)
                    VALUES (1, 1, '127.0.0.1:1', 'https', 'as.test', 443, 'POST', '/token', 'HTTP/1.1', '[]', '[]', 0, 0, 0, 0, 0, 0, 0, 'token', ?)
                    """, arguments: [old])
        }
        let db = try AppDatabase(queue)  // runs v5
        var fresh = sampleExchange(1)
        fresh.sessionID = 1
        try db.insert(exchanges: [fresh], tunnels: [])
        let rows = try db.exchanges()
        #expect(rows.count == 2)
        #expect(
            rows[0].oauthParams == [
                OAuthParam(location: .requestBody, name: "grant_type", value: "client_credentials"),
                OAuthParam(
                    location: .requestHeaderAuthorization, name: "client_secret",
                    value: "[masked client_secret len=3 fp=abc]", fingerprint: "abc"),
            ])
        #expect(rows[1].oauthParams == fresh.oauthParams)
        let stored = try db.writer.read {
            try String.fetchOne($0, sql: "SELECT oauth_params FROM exchange WHERE id = ?", arguments: [rows[1].id])
        }
        #expect(stored?.hasPrefix("[[") == true, "new rows keep each parameter as an array")
        let view = try db.writer.read { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT exchange_id, location, name, value, fingerprint FROM oauth_param ORDER BY exchange_id, position"
            )
        }
        #expect(view.count == 2 + fresh.oauthParams.count)
        #expect(
            view[1]["fingerprint"] as String? == "abc"
                && view[1]["location"] as String? == "request.header.authorization")
        #expect(view[0]["fingerprint"] as String? == nil && view[0]["value"] as String? == "client_credentials")
        for (row, p) in zip(view.dropFirst(2), fresh.oauthParams) {
            #expect(row["location"] as String? == p.location.rawValue && row["name"] as String? == p.name)
            #expect(row["value"] as String? == p.value && row["fingerprint"] as String? == p.fingerprint)
        }
    }

    @Test func walModeOnDisk() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("authtap-store-\(UUID())")
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = try AppDatabase.open(path: dir.appendingPathComponent("Captures/a.sqlite").path)
        let mode = try db.writer.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        // A new capture file gets 32 KiB pages (fewer WAL frames per batch); reopening keeps them.
        #expect(try db.writer.read { try Int.fetchOne($0, sql: "PRAGMA page_size") } == 32768)
        let again = try AppDatabase.open(path: dir.appendingPathComponent("Captures/a.sqlite").path)
        #expect(try again.writer.read { try Int.fetchOne($0, sql: "PRAGMA page_size") } == 32768)
        #expect(try again.writer.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "wal")
    }
}

@Test func handshakeRecordsRoundTripThroughTheHandWrittenJSON() throws {
    var r = HandshakeRecord(
        client: "::1", clientPort: 5, server: "127.0.0.1", serverPort: 443, outcome: .alert, side: "client",
        alert: "unknown_ca",
        encryptedAlert: false, sni: "we\"ird\\name", alpnOffered: ["h2", "http/1.1"], versionsOffered: ["TLSv1.3"],
        cipherSuitesOffered: 3,
        serverVersion: "TLSv1.2", cipher: "TLS_AES_128_GCM_SHA256", alpn: nil, helloRetryRequest: false,
        certificateSubject: "CN=x", certificateIssuer: "CN=y", certificateSANs: ["x"],
        certificateNotBefore: Date(timeIntervalSince1970: 1_700_000_000),
        certificateNotAfter: Date(timeIntervalSince1970: 1_800_000_000), startMicros: 1, endMicros: 2, durationMs: 1.5,
        firstPacket: 1, lastPacket: 9, clientHelloRetransmits: 0, detail: "line\nbreak")
    let db = try AppDatabase.inMemory()
    let session = try db.startSession(version: "t", arguments: [], listen: nil)
    try db.insert(handshakes: [r], session: session.id!)
    #expect(try db.handshakes(session: session.id!).map(\.record) == [r])
    r.durationMs = nil
    r.side = nil
    r.certificateNotBefore = nil
    try db.insert(handshakes: [r], session: session.id!)
    #expect(try db.handshakes(session: session.id!).last?.record == r)
}
