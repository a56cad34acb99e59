import AuthtapModel
import Foundation
import GRDB

extension AppDatabase {
    public func insert(handshakes: [HandshakeRecord], session: Int64) throws {
        guard !handshakes.isEmpty else { return }
        try writer.write { db in
            let st = try db.cachedStatement(
                sql: """
                    INSERT INTO handshake (session_id, client, client_port, server, server_port, outcome, side, alert, encrypted_alert,
                      sni, started_at, ended_at, duration_ms, first_packet, last_packet, detail, facts)
                    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                    """)
            for h in handshakes {
                let facts = Self.factsJSON(h)
                try st.execute(arguments: [
                    session, h.client, h.clientPort, h.server, h.serverPort, h.outcome.rawValue, h.side, h.alert,
                    h.encryptedAlert,
                    h.sni, Double(h.startMicros) / 1e6, Double(h.endMicros) / 1e6, h.durationMs, h.firstPacket,
                    h.lastPacket,
                    h.detail, facts,
                ])
            }
        }
    }

    /// The record as JSON, written by hand: Foundation's encoder dominated large offline runs.
    static func factsJSON(_ h: HandshakeRecord) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        var first = true
        func key(_ k: String) {
            out.append(first ? UInt8(ascii: "{") : UInt8(ascii: ","))
            first = false
            JSONText.appendQuoted(k, to: &out)
            out.append(UInt8(ascii: ":"))
        }
        func string(_ k: String, _ v: String?) { if let v { key(k); JSONText.appendQuoted(v, to: &out) } }
        func number(_ k: String, _ v: String?) { if let v { key(k); out.append(contentsOf: v.utf8) } }
        func list(_ k: String, _ v: [String]) {
            key(k)
            out.append(UInt8(ascii: "["))
            for (i, x) in v.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONText.appendQuoted(x, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        string("client", h.client); number("clientPort", String(h.clientPort))
        string("server", h.server); number("serverPort", String(h.serverPort))
        string("outcome", h.outcome.rawValue); string("side", h.side); string("alert", h.alert)
        number("encryptedAlert", h.encryptedAlert ? "true" : "false")
        string("sni", h.sni); list("alpnOffered", h.alpnOffered); list("versionsOffered", h.versionsOffered)
        number("cipherSuitesOffered", String(h.cipherSuitesOffered))
        string("serverVersion", h.serverVersion); string("cipher", h.cipher); string("alpn", h.alpn)
        number("helloRetryRequest", h.helloRetryRequest ? "true" : "false")
        string("certificateSubject", h.certificateSubject); string("certificateIssuer", h.certificateIssuer)
        list("certificateSANs", h.certificateSANs)
        string("certificateNotBefore", h.certificateNotBefore.map(Self.isoUTC))
        string("certificateNotAfter", h.certificateNotAfter.map(Self.isoUTC))
        number("startMicros", String(h.startMicros)); number("endMicros", String(h.endMicros))
        number("durationMs", h.durationMs.map { String($0) })
        number("firstPacket", String(h.firstPacket)); number("lastPacket", String(h.lastPacket))
        number("clientHelloRetransmits", String(h.clientHelloRetransmits))
        string("detail", h.detail)
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    /// `2026-11-23T02:54:17Z` without a formatter object (creating one per record was the cost).
    static func isoUTC(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return
            "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))Z"
    }

    /// Handshake records with their row ids, oldest first. A row whose ids or facts are damaged is skipped and
    /// reported (`readProblems`).
    public func handshakes(session: Int64? = nil) throws -> [(id: Int64, session: Int64, record: HandshakeRecord)] {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try reading { db in
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT id, session_id, facts FROM handshake" + (session == nil ? "" : " WHERE session_id = ?")
                    + " ORDER BY id",
                arguments: session.map { [$0] } ?? [])
            return rows.compactMap { row in
                let r = StoredRow(row)
                do {
                    let facts = try r.text(2, "facts")
                    guard let record = try? decoder.decode(HandshakeRecord.self, from: Data(facts.utf8)) else {
                        throw BadColumn(column: "facts", found: "invalid JSON")
                    }
                    return (try r.int64(0, "id"), try r.int64(1, "session_id"), record)
                } catch let bad {
                    readProblems.skipped("handshake", id: r.label(0), bad)
                    return nil
                }
            }
        }
    }
}
